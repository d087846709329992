"""Test setup: offline data, a private BT_HOME, one LM-call cache for the whole session, and
`filled_db`, a database filled by real smoke runs of the embedded model through a real worker.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.databases import copy_database, fresh_postgres_database

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("BT_DATA_DIR", str(REPO.parent / "shared" / "data"))
os.environ["HF_HUB_OFFLINE"] = "1"  # no test may download weights or data
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # DSPy's litellm would otherwise fetch its price list


def pytest_configure(config: pytest.Config) -> None:
    for marker in ("integration: runs the real embedded model", "ui: Streamlit AppTest pages",
                   "browser: headless Chromium journey", "gpu: needs CUDA"):
        config.addinivalue_line("markers", marker)


@pytest.fixture(scope="session", autouse=True)
def session_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private BT_HOME; the LM cache is shared by every test and subprocess of the session."""
    home = tmp_path_factory.mktemp("bt_home")
    os.environ["BT_HOME"] = str(home)
    os.environ["BT_LM_CACHE"] = str(home / "lm_cache.sqlite")
    os.environ.pop("BT_DATABASE_URL", None)
    return home


@pytest.fixture(scope="module", autouse=True)
def stop_vllm_engine():
    """Stop a vLLM engine a test module started: its memory goes back before the next module's
    worker processes start their own, and its shutdown logs while pytest still captures them."""
    yield
    if "bt_core.lm.vllm.backend" in sys.modules:
        sys.modules["bt_core.lm.vllm.backend"].close_engine()


def bt(*args: str, env: dict[str, str] | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run the CLI as a user would."""
    return subprocess.run([sys.executable, "-m", "bt_core", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def wait_for(condition, timeout: float, interval: float = 1.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database, once SQLite and once the real PostgreSQL server, for DB-level tests."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'studio.sqlite'}"
        return
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with fresh_postgres_database() as url:
        yield url


SMOKE_STRATEGIES = ["p", "w", "p -> w -> p"]


def run_experiment(path: Path, tasks: list[str], strategies: list[str], seeds: tuple[int, ...] = (0,)) -> str:
    """SQLite URL of one smoke-budget experiment run to the end by a real
    `python -m bt_core worker --once` process with the real embedded model."""
    from bt_core.serve.queue import launch_experiment
    from db.session import session_factory

    url = f"sqlite:///{path}"
    launch_experiment(session_factory(url), "smoke", tasks, ["smollm2-135m"], strategies, list(seeds), "smoke")
    result = bt("--db", url, "worker", "--once", timeout=2400)
    assert result.returncode == 0, result.stderr[-3000:]
    return url


@pytest.fixture(scope="session")
def filled_db(session_home: Path) -> str:
    """Iris under p, w and p -> w -> p."""
    return run_experiment(session_home / "filled.sqlite", ["iris"], SMOKE_STRATEGIES)


@pytest.fixture(scope="session")
def filled_seeds_db(filled_db: str, session_home: Path) -> str:
    """`filled_db` with a second seed of its three strategies: real runs that Compare pools over seeds."""
    from sqlalchemy.engine import make_url

    path = session_home / "filled-seeds.sqlite"
    with sqlite3.connect(make_url(filled_db).database) as source, sqlite3.connect(path) as copy:
        source.backup(copy)
    return run_experiment(path, ["iris"], SMOKE_STRATEGIES, seeds=(1,))


@pytest.fixture(scope="session")
def multitask_db(session_home: Path) -> str:
    """GSM8K and HotPotQA under p -> w -> p."""
    return run_experiment(session_home / "multitask.sqlite", ["gsm8k", "hotpotqa"], ["p -> w -> p"])


@pytest.fixture(scope="session")
def filled_postgres(filled_db: str) -> Iterator[str]:
    """`filled_db`'s rows copied into a PostgreSQL database: the same facts, the other dialect."""
    with fresh_postgres_database() as url:
        copy_database(filled_db, url)
        yield url


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight Llama folder (tests/tiny_model.py) for machinery tests; run the
    processes that load it with tests.tiny_model.TINY_MODEL_ENV."""
    from tests.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny_model") / "model")
