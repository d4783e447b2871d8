"""A second `storage-proxy serve` on a port a live proxy holds refuses to start, naming the
other process, and the first keeps serving alone (issue 17, item 1). Before, the second
started ("listening on ...") and shared the port through SO_REUSEPORT: with another data
directory, calls that reached it failed with "the token is unknown or revoked"."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from optuna_grpc_storage import GrpcJournalStorage
from storage_proxy.process.embedded_redis import free_port
from storage_proxy.testing import ProxyProcess, proxy_command


def second_proxy(port: int, data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`storage-proxy serve` on `port` with an embedded Redis of its own in `data_dir`."""
    command = proxy_command("serve", "--host", "127.0.0.1", "--port", str(port),
                            "--data-dir", str(data_dir), "--metrics-port", "-1", *args)
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"the second proxy on port {port} did not refuse: it ran, "
                             f"saying:\n{e.stderr}") from None


def error_lines(out: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in out.stderr.splitlines() if line.startswith("error:")]


def serves_alone(proxy: ProxyProcess, token: str) -> None:
    """Every call on a new connection reaches `proxy` (its Redis knows the token)."""
    storage = GrpcJournalStorage(proxy.endpoint, token=token, use_session=False,
                                 read_staleness=0)
    for _ in range(12):
        storage.get_all_studies()
        storage.grpc_backend.client.close()


@pytest.mark.parametrize("first, second", [("1", "1"), ("2", "1"), ("1", "2")],
                         ids=["single-single", "group-single", "single-group"])
def test_a_second_proxy_on_a_held_port_refuses(redis_server, tmp_path, first: str,
                                               second: str) -> None:
    port = free_port()
    with ProxyProcess(redis_server.url, data_dir=tmp_path / "first", port=port,
                      extra_args=("--workers", first), metrics_port=-1) as proxy:
        assert proxy.proc is not None
        token = proxy.issue_token("first")
        out = second_proxy(port, tmp_path / "second", "--workers", second)
        assert out.returncode == 1, out.stderr
        assert "listening" not in out.stderr
        (line,) = error_lines(out)
        assert f"port {port}" in line and f"pid {proxy.proc.pid}" in line, line
        assert "storage-proxy" in line and "--port" in line
        assert "Traceback" not in out.stderr
        assert not (tmp_path / "second").exists()  # refused before its Redis started
        serves_alone(proxy, token)
    # Once the first has gone, the port is free for a new one.
    with ProxyProcess(redis_server.url, data_dir=tmp_path / "third", port=port,
                      metrics_port=-1) as third:
        serves_alone(third, third.issue_token("third"))


def test_a_port_another_program_listens_on_is_refused(tmp_path) -> None:
    """A listener that holds no lock (another program, or a proxy from before the lock) with
    SO_REUSEPORT set, which the proxy's own listener would have shared."""
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        out = second_proxy(port, tmp_path / "data")
    assert out.returncode == 1, out.stderr
    (line,) = error_lines(out)
    assert f"port {port} is in use" in line and f"pid {os.getpid()}" in line, line
    assert "Traceback" not in out.stderr
