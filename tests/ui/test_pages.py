"""Every page through streamlit's AppTest against a database filled by real smoke runs.

`filled_db` (tests/conftest.py) holds one experiment: Iris with "p", "w" and "p -> w -> p".
Tests that write (launching, cancelling, deleting) work on a copy of it.
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from streamlit.testing.v1 import AppTest

from db import queries
from db.limits import EXPERIMENT_NAME_MAX
from db.session import session_factory
from ui.common import PAGES

pytestmark = pytest.mark.ui
ROOT = Path(__file__).resolve().parents[2]
STRATEGIES = ("p", "w", "p -> w -> p")  # in the paper's order, as the grid shows them


def start(url: str, monkeypatch: pytest.MonkeyPatch, page: str | None = None, run: int | None = None) -> AppTest:
    monkeypatch.setenv("BT_DATABASE_URL", url)
    monkeypatch.setenv("BT_AUTOSTART_WORKER", "0")
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    if run is not None:
        app.query_params["run"] = str(run)
    if page:
        app.switch_page(PAGES[page][0]).run()
    assert not app.exception, app.exception[0].value if app.exception else ""
    return app


def shown_text(app: AppTest) -> str:
    """Every piece of text on the page, tables included."""
    parts = [str(e.value) for kind in ("title", "subheader", "caption", "markdown", "code", "metric", "success",
                                       "info", "error", "warning") for e in getattr(app, kind)]
    parts += [e.value.to_string() for e in app.dataframe]
    parts += [e.label for e in app.expander] + [e.label for e in app.tabs]
    return "\n".join(parts)


def runs_of(url: str) -> dict[str, int]:
    """strategy -> run id."""
    runs = queries.runs_page(session_factory(url))
    return dict(zip(runs["strategy"], runs["id"]))


@pytest.fixture
def db_copy(filled_db: str, tmp_path: Path) -> str:
    source = Path(make_url(filled_db).database)
    target = tmp_path / "copy.sqlite"
    shutil.copy(source, target)
    return f"sqlite:///{target}"


def test_sidebar_names_the_database_and_the_missing_worker(filled_db, monkeypatch):
    app = start(filled_db, monkeypatch)
    sidebar = "\n".join(e.value for kind in ("code", "markdown", "caption") for e in getattr(app.sidebar, kind))
    assert make_url(filled_db).database in sidebar
    assert "No worker" in sidebar
    assert "3 done" in sidebar


@pytest.mark.parametrize("page", list(PAGES))
def test_every_page_renders_on_an_empty_database(page, tmp_path, monkeypatch):
    app = start(f"sqlite:///{tmp_path / 'empty.sqlite'}", monkeypatch, page)
    assert app.title and not app.error


def test_bad_database_url_is_an_error_not_a_traceback(monkeypatch):
    app = start("nosuchdriver://nowhere/db", monkeypatch)
    assert app.error and "Cannot open the database" in app.error[0].value


def test_launch_queues_the_whole_grid_as_one_experiment(db_copy, monkeypatch):
    app = start(db_copy, monkeypatch, "launch")
    app.selectbox[0].select("iris")
    app.multiselect[1].set_value(["vanilla", "p"])
    app.text_input[1].input("0, 1").run()
    assert "4" in [m.value for m in app.metric]  # 2 strategies x 2 seeds
    next(b for b in app.button if b.label == "Queue experiment").click().run()
    assert not app.exception
    assert "with 4 runs" in app.success[0].value
    assert queries.count_runs(session_factory(db_copy), statuses=["queued"]) == 4


@pytest.mark.parametrize("widget, value, message", [
    ("models", ["smollm2-135m", "no such model"], "unknown model 'no such model'"),
    ("chain", "p -> x", "unknown strategy step 'x'"),
    ("seeds", "zero", "bad seed 'zero'"),
])
def test_launch_shows_invalid_choices_inline(filled_db, monkeypatch, widget, value, message):
    app = start(filled_db, monkeypatch, "launch")
    {"models": lambda: app.multiselect[0].set_value(value), "chain": lambda: app.text_input[0].input(value),
     "seeds": lambda: app.text_input[1].input(value)}[widget]()
    app.run()
    assert not app.exception
    assert any(message in e.value for e in app.error)
    assert next(b for b in app.button if b.label == "Queue experiment").disabled


def test_launch_bounds_the_seeds_and_the_name(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'empty.sqlite'}"
    app = start(url, monkeypatch, "launch")
    app.text_input[1].input("0-100000000").run()
    assert not app.exception
    assert any("too many seeds: '0-100000000' is 100,000,001" in e.value for e in app.error)
    queue = lambda: next(b for b in app.button if b.label == "Queue experiment")
    assert queue().disabled
    app.multiselect[1].set_value(["p"])
    app.text_input[1].input("0-99")
    app.text_input[2].set_value("n" * 500).run()  # as a client that ignores the field's max_chars would
    assert not app.error and "100" in [m.value for m in app.metric]
    queue().click().run()
    assert "with 100 runs" in app.success[0].value
    assert [e["name"] for e in queries.experiments(session_factory(url))] == ["n" * EXPERIMENT_NAME_MAX]


def test_launch_proposes_three_seeds_and_says_what_they_can_detect(tmp_path, monkeypatch):
    app = start(f"sqlite:///{tmp_path / 'empty.sqlite'}", monkeypatch, "launch")
    assert app.text_input[1].value == "0-2"
    assert "15 test examples × 3 seeds" in shown_text(app) and "29.5 points" in shown_text(app)  # smoke
    app.segmented_control[0].set_value("default").run()
    assert "30 test examples × 3 seeds" in shown_text(app) and "20.9 points" in shown_text(app)


def test_runs_page_lists_done_runs_and_details_one(filled_db, monkeypatch):
    runs = runs_of(filled_db)
    app = start(filled_db, monkeypatch, "runs", run=runs["p -> w -> p"])
    table = app.dataframe[0].value
    assert set(table["strategy"]) == set(STRATEGIES)
    assert set(table["status"]) == {"done"}
    assert table["worker"].str.startswith(f"{socket.gethostname()}:").all()  # the machine that ran each
    text = shown_text(app)
    assert f"Run #{runs['p -> w -> p']} · p -> w -> p" in text
    assert [t.label for t in app.tabs] == ["Steps", "Profile", "Training", "Candidates", "Config & export"]
    steps = next(d.value for d in app.dataframe if "kind" in d.value.columns)
    assert list(steps["label"]) == ["vanilla", "p", "p -> w", "p -> w -> p"]
    profile = next(d.value for d in app.dataframe if "prompt tokens sent" in d.value.columns)
    assert list(profile["step"]) == ["0 vanilla", "1 p", "2 p -> w", "3 p -> w -> p"]
    assert profile["GFLOP/s (of ceiling)"].str.fullmatch(r"\d+ \(\d+%\)").all()  # the real worker measured both
    assert profile["peak memory"].str.fullmatch(r"\d+\.\d GB").all()
    assert "model 134.5M parameters" in shown_text(app)
    assert any(job["losses"] for job in queries.trainings(session_factory(filled_db), runs["p -> w -> p"]))
    assert {b.label for b in app.get("download_button")} >= {"Program JSON", "Program for DSPy",
                                                             "LoRA adapter (PEFT, zip)"}


def test_runs_actions_cancel_retry_delete(db_copy, monkeypatch):
    db = session_factory(db_copy)
    from bt_core.serve.queue import launch_experiment

    launch_experiment(db, "to cancel", ["iris"], ["smollm2-135m"], ["p"], [0], "smoke")
    run_id = int(queries.runs_page(db, statuses=["queued"])["id"].iloc[0])
    app = start(db_copy, monkeypatch, "runs", run=run_id)
    button = lambda label: next(b for b in app.button if b.label == label)
    button("Cancel").click().run()
    assert queries.run_info(db, run_id)["status"] == "cancelled"
    button("Retry").click().run()
    assert queries.run_info(db, run_id)["status"] == "queued"
    button("Delete for good").click().run()
    assert not app.exception
    assert queries.run_info(db, run_id) is None


def test_compare_grid_has_the_three_strategies_and_a_vanilla_baseline(filled_db, monkeypatch):
    app = start(filled_db, monkeypatch, "compare")
    grid = app.dataframe[0].value
    assert list(grid.columns) == ["task", "model", "budget", "backend", "settings", "vanilla", *STRATEGIES]
    assert list(grid["task"]) == ["iris"]
    deltas = app.dataframe[1].value
    assert set(deltas["strategy"]) == set(STRATEGIES) and set(deltas["versus"]) == {"vanilla", "p", "w"}
    assert len(app.get("plotly_chart")) == 2
    assert app.get("download_button")[0].label == "Download CSV"


def test_compare_without_runs_says_so(filled_db, monkeypatch):
    app = start(filled_db, monkeypatch, "compare")
    app.segmented_control[0].set_value("Chosen runs").run()
    assert not app.exception
    assert "No finished run to compare yet." in [i.value for i in app.info]


def test_traces_show_one_example_under_two_strategies(filled_db, monkeypatch):
    runs = runs_of(filled_db)
    app = start(filled_db, monkeypatch, "traces")
    app.multiselect[0].set_value([runs["p"], runs["p -> w -> p"]]).run()
    assert not app.exception
    columns = [c for c in app.columns if any(s.type == "subheader" for s in c.children.values())]
    assert len(columns) == 2
    titles = [s.value for s in app.subheader]
    assert titles == [f"#{runs['p']} p", f"#{runs['p -> w -> p']} p -> w -> p"]
    text = shown_text(app)
    assert "classify" in text and "COMPLETION" in text and "SYSTEM" in text
    example = app.selectbox[0].value
    db = session_factory(filled_db)
    step = queries.evaluated_steps(db, runs["p"], "test")[-1]
    completion = queries.traces(db, step["program_id"], "test", example)[0]["completion"]
    assert completion in [c.value for c in app.code]
    assert all(completion not in m.value for m in app.markdown)  # model output is never Markdown


def test_traces_compare_two_steps_of_one_run_on_any_split(filled_db, monkeypatch):
    runs = runs_of(filled_db)
    app = start(filled_db, monkeypatch, "traces", run=runs["p -> w -> p"])
    app.segmented_control[0].set_value("Steps of one run").run()
    assert [s.value for s in app.subheader] == ["step 0 · vanilla", "step 3 · p -> w -> p"]
    for split in ("val", "train"):
        app.segmented_control[1].set_value(split).run()
        assert not app.exception
        assert app.subheader and f"{split} examples" in shown_text(app)


def test_traces_filters_narrow_the_examples(filled_db, monkeypatch):
    runs = runs_of(filled_db)
    app = start(filled_db, monkeypatch, "traces")
    app.multiselect[0].set_value([runs["p"], runs["w"]]).run()
    total = len(app.selectbox[0].options)
    app.toggle[0].set_value(True).run()
    failures = len(app.selectbox[0].options) if app.selectbox else 0
    app.toggle[0].set_value(False)
    app.text_input[0].input("setosa").run()
    assert not app.exception
    searched = len(app.selectbox[0].options) if app.selectbox else 0
    assert failures <= total and 0 < searched <= total


def test_prompts_show_instructions_demos_and_a_diff(filled_db, monkeypatch):
    runs = runs_of(filled_db)
    app = start(filled_db, monkeypatch, "prompts", run=runs["p -> w -> p"])
    labels = [e.label for e in app.expander]
    assert any("zero-shot" in label for label in labels) and any(label.startswith("★") for label in labels)
    demos = [d.value for d in app.dataframe]
    assert any({"species", "petal_length"} <= set(d.columns) for d in demos)
    assert "Given the measurements of an iris flower" in shown_text(app)
    programs = queries.programs(session_factory(filled_db), runs["p -> w -> p"], with_state=True)
    taught = next(row["id"] for row in programs.to_dict("records")
                  if any(p["demos"] for p in row["state"].values()))
    next(s for s in app.selectbox if s.label == "From").set_value(int(programs["id"].iloc[0]))  # zero-shot
    next(s for s in app.selectbox if s.label == "To").set_value(int(taught)).run()
    diff = [c for c in app.code if c.language == "diff"]
    assert diff and diff[0].value.startswith(f"--- program {programs['id'].iloc[0]}")
    assert any(line.startswith("+") and not line.startswith("+++") for line in diff[0].value.splitlines())


def test_a_candidate_stopped_early_shows_how_far_it_got_not_a_score(tmp_path, monkeypatch):
    """A p step whose candidates after zero-shot fail their first 16 of 48 validation examples and stop."""
    from bt_core.lm.scripted import ScriptedLM
    from bt_core.optimizers import BootstrapFewShotWithRandomSearch
    from bt_core.recording import recording
    from bt_core.serve.queue import launch_experiment
    from bt_core.serve.recording_db import RunRecorder
    from bt_core.serve.worker import claim
    from bt_core.tasks import get_task
    from db.models import Run, RunStatus, Step
    from tests.scripted import lost_with_demos

    url = f"sqlite:///{tmp_path / 'stopped.sqlite'}"
    db = session_factory(url)
    launch_experiment(db, "stopped", ["iris"], ["smollm2-135m"], ["p"], [0], "smoke")
    lease = claim(db, "test", 1)
    with db.begin() as s:
        step = Step(run_id=1, index=1, kind="p", label="p")
        s.add(step)
        s.flush()
        step_id = step.id
    iris = get_task("iris")
    splits = iris.load(15, 48, 0, seed=0)
    program = iris.program()
    program.set_lm(ScriptedLM(lost_with_demos))
    with recording(RunRecorder(lease, step_id, "p")):
        BootstrapFewShotWithRandomSearch(iris.metric, num_candidates=1).compile(
            program, trainset=splits.train, valset=splits.val)
    with db.begin() as s:
        s.get(Run, 1).status = RunStatus.done

    stopped = "stopped at 16 of 48, at most 66.7%"
    labels = [e.label for e in start(url, monkeypatch, "prompts", run=1).expander]
    assert [label.split(" · val ")[1] for label in labels] == ["95.8", stopped, stopped]
    table = next(d.value for d in start(url, monkeypatch, "runs", run=1).dataframe if "role" in d.value.columns)
    assert list(table["val"]) == ["95.8", stopped, stopped]


def test_no_page_renders_raw_html():
    pages = list((ROOT / "app_pages").glob("*.py"))
    assert len(pages) >= 5, f"found {len(pages)} pages in app_pages/: the scan would check nothing"
    sources = [ROOT / "app.py", *pages, *(ROOT / "ui").glob("*.py")]
    assert not [p.name for p in sources if "unsafe_allow_html" in p.read_text() or "st.html(" in p.read_text()]


def test_a_failed_run_shows_its_error(db_copy, monkeypatch, tmp_path):
    """A corrupt model folder passes the name check at launch and fails when the run loads it."""
    from bt_core.serve.queue import launch_experiment
    from bt_core.serve.runner import run_to_end
    from bt_core.serve.worker import claim
    from db.models import RunStatus

    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    db = session_factory(db_copy)
    launch_experiment(db, "broken", ["iris"], [str(broken)], ["vanilla"], [0], "smoke")
    run_id = int(queries.runs_page(db, statuses=["queued"])["id"].iloc[0])
    assert run_to_end(claim(db, "test", run_id)) == RunStatus.failed
    error = queries.run_info(db, run_id)["error"]
    assert error and ("config.json" in error or "JSON" in error)
    app = start(db_copy, monkeypatch, "runs", run=run_id)
    text = shown_text(app)
    assert "The run failed" in text and error in text


def test_hotpotqa_runs_and_traces_show_each_hops_retrieval(multitask_db, monkeypatch):
    run_id = int(queries.runs_page(session_factory(multitask_db)).set_index("task").at["hotpotqa", "id"])
    app = start(multitask_db, monkeypatch, "runs", run=run_id)
    steps = next(d.value for d in app.dataframe if "kind" in d.value.columns)
    assert {"test f1", "test recall_hop1", "test recall_hop2", "test recall"} <= set(steps.columns)
    app = start(multitask_db, monkeypatch, "traces", run=run_id)
    app.multiselect[0].set_value([run_id]).run()
    text = shown_text(app)
    assert "MEASURES" in text and "recall_hop1" in text and "recall_hop2" in text and "titles_hop2" in text
    assert all(module in text for module in ("generate_query[0]", "generate_query[1]", "generate_answer"))
