"""Core slots: a host's processes never hold more slots than it has cores, a dead holder's slots
come free at once, and the share each asks for splits the cores among this host's workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from bt_core.serve.cores import fair_share, machine_cores, requested_threads, take_cores
from bt_core.serve.queue import launch_experiment
from bt_core.serve.worker import claim, take_share, worker_id
from db.session import session_factory
from tests.conftest import REPO


@pytest.fixture(autouse=True)
def private_home(tmp_path, monkeypatch):
    monkeypatch.setenv("BT_HOME", str(tmp_path))
    monkeypatch.delenv("BT_THREADS", raising=False)


def test_slots_never_exceed_the_cores():
    cores = machine_cores()
    first = take_cores(cores + 5)
    assert first is not None and first.threads == cores
    assert take_cores(1) is None
    first.release()
    second = take_cores(1)
    assert second is not None and second.threads == 1
    rest = take_cores(cores)
    assert (rest.threads if rest else 0) == cores - 1
    second.release()
    if rest:
        rest.release()


def test_a_share_gives_slots_back_and_takes_free_ones_up_again():
    cores = machine_cores()
    share = take_cores(cores)
    assert share.resize(1) and share.threads == 1
    newcomer = take_cores(cores)
    assert newcomer is not None and newcomer.threads == cores - 1  # what the share gave back
    assert not share.resize(cores) and share.threads == 1  # nothing free to grow into
    newcomer.release()
    assert share.resize(cores) and share.threads == cores
    assert take_cores(1) is None
    share.release()


def test_a_computing_thread_follows_a_share_set_from_another_thread():
    """torch's thread count is per thread once a thread has computed: the heartbeat's new share
    reaches the LM's thread only because that thread follows it before each step."""
    from concurrent.futures import ThreadPoolExecutor

    import torch

    from bt_core.lm.threads import follow_threads, set_threads

    before = torch.get_num_threads()
    try:
        set_threads(2)
        with ThreadPoolExecutor(1) as lm_thread:
            def step() -> int:
                follow_threads()
                torch.ones(64, 64) @ torch.ones(64, 64)
                return torch.get_num_threads()
            assert lm_thread.submit(step).result() == 2
            set_threads(1)  # from this thread, as the heartbeat does
            assert lm_thread.submit(torch.get_num_threads).result() == 2  # torch alone would keep 2
            assert lm_thread.submit(step).result() == 1
    finally:
        set_threads(before)


@pytest.fixture
def holder() -> Iterator[subprocess.Popen]:
    """Another process of this host, holding every core slot."""
    process = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import time
        from bt_core.serve.cores import machine_cores, take_cores
        share = take_cores(machine_cores())  # held while referenced
        print(share.threads, flush=True)
        time.sleep(600)
    """)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert int(process.stdout.readline()) == machine_cores()
    yield process
    process.kill()
    process.wait()


def test_a_killed_holders_slots_come_free(holder):
    assert take_cores(1) is None
    holder.kill()  # SIGKILL: no cleanup runs
    holder.wait()
    share = take_cores(machine_cores())
    assert share is not None and share.threads == machine_cores()
    share.release()


def test_slots_of_a_run_that_heartbeats_are_waited_for(holder, tmp_path):
    """The holder's run is running here with a fresh heartbeat: the cores are its."""
    sessions = session_factory(f"sqlite:///{tmp_path / 'studio.sqlite'}")
    launch_experiment(sessions, "t", ["iris"], ["smollm2-135m"], ["p"], [0], "smoke")
    claim(sessions, f"{worker_id().rpartition(':')[0]}:{holder.pid}", threads=machine_cores())
    assert take_share(sessions, settle_s=0.1) is None


def test_slots_of_a_suspended_process_are_not_waited_for(holder, tmp_path):
    """Suspended (Ctrl-Z, SIGSTOP), the holder computes nothing and runs nothing that heartbeats,
    though the kernel keeps its locks: its cores are used."""
    sessions = session_factory(f"sqlite:///{tmp_path / 'studio.sqlite'}")
    holder.send_signal(signal.SIGSTOP)
    share = take_share(sessions, settle_s=0.1)
    assert share is not None and share.threads == machine_cores()


@pytest.mark.parametrize("workers", [1, 2, 3, 64])
def test_the_fair_share_splits_the_cores_among_this_hosts_workers(workers):
    cores = machine_cores()
    assert fair_share(workers) == max(1, cores // workers)
    assert fair_share(workers) * min(workers, cores) <= cores


def test_threads_asked_for_are_capped_by_the_cores(monkeypatch):
    monkeypatch.setenv("BT_THREADS", "1")
    assert fair_share(5) == 1
    monkeypatch.setenv("BT_THREADS", str(machine_cores() + 8))
    assert fair_share(1) == machine_cores()


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_bad_thread_counts_are_one_clear_error(value, monkeypatch):
    monkeypatch.setenv("BT_THREADS", value)
    with pytest.raises(ValueError, match=f"whole number, at least 1; got '{value}'"):
        requested_threads()


def test_each_share_names_its_own_cpus_and_vllm_is_pinned_to_them():
    from bt_core.lm.vllm.backend import cpu_binding

    cores = machine_cores()
    first = take_cores(1)
    rest = take_cores(cores)
    assert first.cpus() and not set(first.cpus()) & set(rest.cpus() if rest else [])
    assert sorted(first.cpus() + (rest.cpus() if rest else [])) == sorted(os.sched_getaffinity(0))
    assert cpu_binding((1, first.cpus()), None) == {"VLLM_CPU_OMP_THREADS_BIND": str(first.cpus()[0])}
    assert cpu_binding((2, []), None) == {"VLLM_CPU_OMP_THREADS_BIND": "nobind", "OMP_NUM_THREADS": "2"}  # Ray's
    assert cpu_binding((1, first.cpus()), "0-3") == {} and cpu_binding(None, None) == {}
    first.release()
    if rest:
        rest.release()
