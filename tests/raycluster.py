"""Local Ray clusters for the tests: each node a `ray start --block` process in its own session,
so stopping it stops exactly the Ray processes it started (never `ray stop`, which stops every
Ray process on the machine). Small (2 CPUs a node), no dashboard, no usage stats, and token
auth with a token of its own, passed in the environment (not ~/.ray/auth_token, which other
clusters on the machine would share).
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))


@dataclass(frozen=True)
class Cluster:
    address: str  # the head's HOST:PORT
    env: dict[str, str]  # what a driver needs in its environment to join


@contextmanager
def ray_cluster(extra_nodes: int = 0) -> Iterator[Cluster]:
    """A head node, plus nodes that Ray takes for other machines (addresses 127.0.0.2, ...)."""
    port = _free_port()
    env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    if password := _test_postgres_password():  # as ~/.pgpass does on a real cluster's nodes (README)
        env["PGPASSWORD"] = password
    cluster = Cluster(f"127.0.0.1:{port}", env)
    with ExitStack() as stack:
        temp = stack.enter_context(tempfile.TemporaryDirectory(prefix="bt-ray-"))  # short: socket paths
        stack.enter_context(_node(cluster, "--head", "--port", str(port), "--include-dashboard=false",
                                  "--temp-dir", temp))
        for n in range(extra_nodes):
            stack.enter_context(_node(cluster, "--address", cluster.address, "--node-ip-address", f"127.0.0.{n + 2}"))
        yield cluster


def _test_postgres_password() -> str | None:
    """The test server's password: its nodes read it as libpq does, for the password-less URL
    that Ray tasks get (bt_core/serve/ray_executor.py)."""
    from sqlalchemy.engine import make_url

    url = os.environ.get("BT_TEST_POSTGRES_URL")
    return make_url(url).password if url else None


@contextmanager
def _node(cluster: Cluster, *args: str) -> Iterator[None]:
    node = subprocess.Popen([RAY, "start", "--block", "--num-cpus", "2", "--disable-usage-stats", *args],
                            env={**os.environ, **cluster.env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        _wait_started(node)
        yield
    finally:
        _stop(node)


def _wait_started(node: subprocess.Popen) -> None:
    output = []
    for line in node.stdout:
        output.append(line)
        if "Ray runtime started" in line:
            return
    raise RuntimeError("ray start failed:\n" + "".join(output[-30:]))


def _stop(node: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):  # a --block head may linger on TERM
        try:
            os.killpg(node.pid, sig)
            node.wait(timeout=wait)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
