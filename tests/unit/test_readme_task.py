"""The README's "Add your own task" file, run as a user would use it: dropped into the tasks
package, found by name, loaded, and optimized with a scripted LM."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import bt_core.tasks as tasks_package
from bt_core.evaluate import evaluate
from bt_core.lm.scripted import ScriptedLM
from bt_core.optimizers import BootstrapFewShot
from bt_core.tasks import get_task, task_names

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture
def wine(tmp_path, monkeypatch):
    section = README.read_text().split("## Add your own task", 1)[1]
    source = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    folder = tmp_path / "more_tasks"
    folder.mkdir()
    (folder / "wine.py").write_text(source)
    monkeypatch.setattr(tasks_package, "__path__", [*tasks_package.__path__, str(folder)])
    assert "wine" in task_names()
    return get_task("wine")


def test_the_readme_task_loads_disjoint_seeded_splits(wine):
    splits = wine.load(9, 9, 12, seed=0)
    assert [len(s) for s in (splits.train, splits.val, splits.test)] == [9, 9, 12]
    assert {e["cultivar"] for e in splits.train} == {"barolo", "grignolino", "barbera"}
    chemistry = [e["chemistry"] for s in (splits.train, splits.val, splits.test) for e in s]
    assert len(set(chemistry)) == 30 and "alcohol=" in chemistry[0]


def test_the_readme_task_is_optimized_like_any_other(wine):
    """An LM that answers from the alcohol level: bootstrapping keeps only its correct traces."""
    def answer(messages, turn):
        alcohol = float(re.findall(r"alcohol=([\d.]+)", messages[-1]["content"])[0])
        return f"Cultivar: {'barolo' if alcohol > 13.5 else 'grignolino'}"

    splits = wine.load(9, 9, 12, seed=0)
    program = wine.program()
    program.set_lm(ScriptedLM(answer))
    compiled = BootstrapFewShot(wine.metric).compile(program, trainset=splits.train)
    demos = compiled.classify.demos
    assert demos and all(wine.metric(d, d) == 1.0 for d in demos)
    score = evaluate(compiled, splits.test, wine.metric, split="test").score
    assert 0 < score < 1
