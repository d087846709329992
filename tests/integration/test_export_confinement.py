"""Export and the dashboard's adapter download serve only files inside the run's own artifacts
folder, whatever adapter path its database row names (a row is not proof that the run wrote it)."""

from __future__ import annotations

import json
import zipfile
from io import BytesIO
from pathlib import Path

import pytest
from sqlalchemy import select, update

from bt_core.serve.queue import launch_experiment
from bt_core.tasks import get_task
from db.models import Run, RunStatus, Step, StepStatus, utcnow
from db.session import session_factory
from tests.conftest import bt
from tests.ui.test_pages import start
from ui.runs_monitor import _zip


@pytest.fixture
def artifacts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "artifacts"
    monkeypatch.setenv("BT_ARTIFACTS", str(root))  # this process and the CLI's (bt passes os.environ on)
    return root


def finished_run(url: str, adapter_path: str | None) -> int:
    """A done Iris run whose final step names `adapter_path`, as a worker would have left it."""
    sessions = session_factory(url)
    experiment = launch_experiment(sessions, "export", ["iris"], ["smollm2-135m"], ["w"], [0], "smoke")
    with sessions.begin() as session:
        run_id = session.scalar(select(Run.id).where(Run.experiment_id == experiment))
        session.execute(update(Run).where(Run.id == run_id).values(status=RunStatus.done, finished_at=utcnow()))
        session.add(Step(run_id=run_id, index=1, kind="w", label="w", status=StepStatus.done, finished_at=utcnow(),
                         program_state=get_task("iris").program().dump_state(), adapter_path=adapter_path))
    return run_id


def adapter(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text('{"r": 8}')
    return folder


def refused(result, run_id: int) -> bool:
    return (result.returncode == 2 and result.stderr.count("\n") == 1
            and f"run {run_id}'s adapter path " in result.stderr
            and "outside its artifacts folder" in result.stderr and "refusing to export it" in result.stderr)


def test_the_runs_own_adapter_is_exported(tmp_path, artifacts):
    url = f"sqlite:///{tmp_path / 'studio.sqlite'}"
    run_id = finished_run(url, "")
    folder = adapter(artifacts / f"run-{run_id}" / "attempt-1" / "adapter-0a1b")
    (folder / "nested").mkdir()
    (folder / "nested" / "weights.bin").write_bytes(b"\x00\x01")
    secret = tmp_path / "secret.txt"
    secret.write_text("not the adapter's")
    (folder / "link.txt").symlink_to(secret)  # a link inside the folder may point anywhere: left out
    with session_factory(url).begin() as session:
        session.execute(update(Step).values(adapter_path=str(folder)))
    out = tmp_path / "export"
    result = bt("--db", url, "export", str(run_id), str(out))
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "program.json").read_text())["strategy"] == "w"
    files = sorted(str(p.relative_to(out / "adapter")) for p in (out / "adapter").rglob("*") if p.is_file())
    assert files == ["adapter_config.json", "nested/weights.bin"]
    assert zipfile.ZipFile(BytesIO(_zip(folder))).namelist() == ["adapter_config.json", "nested/weights.bin"]


@pytest.mark.parametrize("where", ["/etc", "another run", "dot-dot", "prefix", "symlink"])
def test_an_adapter_path_outside_the_runs_folder_is_refused(tmp_path, artifacts, where):
    url = f"sqlite:///{tmp_path / 'studio.sqlite'}"
    run_id = finished_run(url, None)
    own = artifacts / f"run-{run_id}"
    outside = adapter(tmp_path / "elsewhere")
    stored = {"/etc": "/etc",
              "another run": str(adapter(artifacts / f"run-{run_id + 1}" / "attempt-1" / "adapter-x")),
              "dot-dot": f"{own}/attempt-1/../../run-{run_id + 1}",
              "prefix": str(adapter(artifacts / f"run-{run_id}0" / "attempt-1" / "adapter-x")),  # run-10 is not run-1
              "symlink": str(own / "attempt-1" / "adapter-x")}[where]
    if where == "symlink":
        Path(stored).parent.mkdir(parents=True)
        Path(stored).symlink_to(outside, target_is_directory=True)
    with session_factory(url).begin() as session:
        session.execute(update(Step).values(adapter_path=stored))
    out = tmp_path / "export"
    result = bt("--db", url, "export", str(run_id), str(out))
    assert refused(result, run_id), result.stderr
    assert not out.exists()


def test_the_dashboard_offers_no_download_of_a_folder_outside(tmp_path, artifacts, monkeypatch):
    url = f"sqlite:///{tmp_path / 'studio.sqlite'}"
    run_id = finished_run(url, "/etc")
    app = start(url, monkeypatch, "runs", run=run_id)
    assert any(f"run {run_id}'s adapter path /etc is outside its artifacts folder" in e.value for e in app.error)
    assert [b.label for b in app.get("download_button")] == ["Program JSON", "Program for DSPy"]
    folder = adapter(artifacts / f"run-{run_id}" / "attempt-1" / "adapter-0a1b")
    with session_factory(url).begin() as session:
        session.execute(update(Step).values(adapter_path=str(folder)))
    app.run()
    assert not app.error
    assert [b.label for b in app.get("download_button")] == ["Program JSON", "Program for DSPy",
                                                             "LoRA adapter (PEFT, zip)"]
