"""The dashboard, started as the README starts it, listens on loopback only: it has no login,
and whoever reaches it can queue runs, delete them and download adapters."""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.conftest import REPO
from tests.processes import free_port, stop_group, wait_until_healthy

LISTEN = "0A"  # the TCP state LISTEN in /proc/net/tcp and tcp6


def listening_addresses(port: int) -> set[str]:
    """The local address of every socket that listens on `port`, from the kernel's tables."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if fields[3] == LISTEN and int(hex_port, 16) == port:
                # 32-bit words, each in the host's byte order
                words = [bytes.fromhex(address[i:i + 8]) for i in range(0, len(address), 8)]
                raw = b"".join(w[::-1] if sys.byteorder == "little" else w for w in words)
                found.add(str(ipaddress.ip_address(raw)))
    return found


def non_loopback_address() -> str | None:
    """This machine's primary IPv4 address: the source of its route out (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: routed, never answered
        except OSError:  # no route: loopback is all there is
            return None
        address = probe.getsockname()[0]
    return None if ipaddress.ip_address(address).is_loopback else address


def test_the_dashboard_listens_on_loopback_only(tmp_path):
    port = free_port()
    env = {**os.environ, "BT_AUTOSTART_WORKER": "0", "BT_HOME": str(tmp_path / "home")}
    env.pop("BT_DATABASE_URL", None)
    log = tmp_path / "dashboard.log"
    with open(log, "wb") as out:
        # Started from another folder: dashboard.sh itself must run streamlit where .streamlit/ is.
        server = subprocess.Popen(["bash", str(REPO / "scripts" / "dashboard.sh"), "--server.port", str(port)],
                                  cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", server)
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).status == 200
        assert listening_addresses(port) == {"127.0.0.1"}
        address = non_loopback_address()
        if address is not None:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as client:
                client.settimeout(5)
                assert client.connect_ex((address, port)) == errno.ECONNREFUSED
    finally:
        stop_group(server.pid)
        server.wait(timeout=30)
    assert "Traceback" not in log.read_text(), log.read_text()
