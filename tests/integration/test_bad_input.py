"""Bad input gets one clear line and a non-zero exit, and leaves the database as it was."""

from __future__ import annotations

import hashlib

import pytest

from tests.conftest import bt


@pytest.fixture
def stored(tmp_path):
    url = f"sqlite:///{tmp_path / 'studio.sqlite'}"
    assert bt("--db", url, "list").returncode == 0  # creates the schema
    return url, tmp_path / "studio.sqlite"


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("args, message", [
    (["--task", "mnist"], "unknown task 'mnist'; valid: "),
    (["--task", "iris", "--model", "no-such-model"], "unknown model 'no-such-model'"),
    (["--task", "iris", "--model", "acme/not-downloaded"], "huggingface-cli download acme/not-downloaded"),
    (["--task", "iris", "--strategy", "p -> x"], "unknown strategy step 'x'"),
    (["--task", "iris", "--strategy", ""], "empty strategy"),
    (["--task", "iris", "--budget", "huge"], "unknown budget 'huge'"),
])
def test_bad_run_arguments(stored, args, message):
    url, path = stored
    before = digest(path)
    result = bt("--db", url, "run", *args, timeout=120)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr and "Traceback" not in result.stderr
    assert digest(path) == before


@pytest.mark.parametrize("url, message", [
    ("sqlite:////proc/no-such-dir/studio.sqlite", "cannot create the folder for database"),
    ("nosuchdb://x", "bad database URL"),
])
def test_bad_database_urls(url, message):
    result = bt("--db", url, "run", "--task", "iris", "--strategy", "p", timeout=120)
    assert result.returncode == 2 and message in result.stderr and result.stderr.count("\n") == 1


def test_unknown_run_id(stored):
    url, _ = stored
    result = bt("--db", url, "show", "42")
    assert result.returncode == 2 and "no run 42" in result.stderr
