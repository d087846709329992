"""`python -m bt_core show` gives a run's test score with its 95% interval."""

from __future__ import annotations

from scipy import stats

from bt_core.serve.cli import main
from db import queries
from db.session import session_factory
from tests.comparedb import PASSING, TEST, build_compare_db


def test_show_prints_the_wilson_interval_of_the_final_test_score(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'known.sqlite'}"
    build_compare_db(url)
    runs = queries.compare_runs(session_factory(url))
    run_id = int(runs[(runs["strategy"] == "p") & (runs["seed"] == 0)]["id"].iat[0])
    assert main(["--db", url, "show", str(run_id)]) == 0
    out = capsys.readouterr().out
    interval = stats.binomtest(PASSING["p"][0], TEST).proportion_ci(method="wilson")
    ci = f"[{100 * interval.low:.1f}%, {100 * interval.high:.1f}%]"
    assert f"  test  66.7%  95% CI {ci} (Wilson, 30 test examples of step 1)" in out
    assert out.startswith(f"run {run_id} [done] iris / smollm2-135m / p / seed 0 / hf\n  step 0 vanilla")
