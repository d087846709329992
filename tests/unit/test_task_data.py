"""What every task's data must do: load each budget's sizes, and fail clearly when missing."""

import json

import pytest

from bt_core.tasks import get_task, task_names


def keys(examples) -> set[str]:
    return {json.dumps(dict(e), sort_keys=True) for e in examples}


@pytest.mark.parametrize("task", task_names())
def test_splits_follow_the_seed_and_test_stays_fixed(task):
    sizes = get_task(task).sizes["default"]
    a, b, c = (get_task(task).load(sizes.train, sizes.val, sizes.test, seed=s) for s in (0, 0, 1))
    assert a == b
    assert keys(a.train) != keys(c.train)
    assert a.test == c.test
    assert keys(a.train).isdisjoint(keys(a.val))
    assert keys(a.test).isdisjoint(keys(a.train) | keys(a.val))


@pytest.mark.parametrize("task", task_names())
def test_every_budget_loads_its_sizes(task):
    for budget, sizes in get_task(task).sizes.items():
        splits = get_task(task).load(sizes.train, sizes.val, sizes.test, seed=0)
        assert (len(splits.train), len(splits.val), len(splits.test)) == (sizes.train, sizes.val, sizes.test), budget


@pytest.mark.parametrize("task, files", [
    ("gsm8k", r"gsm8k/train\.jsonl.*gsm8k/test\.jsonl"),
    ("hotpotqa", r"hotpotqa/dev_distractor\.jsonl"),
])
def test_missing_data_names_the_files_and_the_hub(task, files, tmp_path, monkeypatch):
    monkeypatch.setenv("BT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match=rf"BT_DATA_DIR.*{files}.*pip install datasets"):
        get_task(task).load(8, 6, 8, seed=0)
