"""A proxy's processes live and die as one: SIGKILL of `storage-proxy serve` takes every
server process of its group (and its embedded Redis) with it, the port is free at once, and a
new proxy on it serves alone."""

from __future__ import annotations

import signal
import socket
import time

import psutil
import pytest

from optuna_grpc_storage import GrpcJournalStorage
from storage_proxy.testing import ProxyProcess


def group_of(proxy: ProxyProcess) -> list[psutil.Process]:
    assert proxy.proc is not None
    return [psutil.Process(proxy.proc.pid), *psutil.Process(proxy.proc.pid).children(True)]


def refuses(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.parametrize("embedded", [False, True])
def test_sigkill_of_the_supervisor_ends_the_whole_group(redis_server, tmp_path,
                                                        embedded: bool) -> None:
    proxy = ProxyProcess(None if embedded else redis_server.url, data_dir=tmp_path / "a",
                         extra_args=("--workers", "2"))
    proxy.start()
    try:
        storage = GrpcJournalStorage(proxy.endpoint, token=proxy.issue_token("first"))
        storage.get_all_studies()
        port, members = proxy.port, group_of(proxy)
        servers = [p for p in members if "spawn_main" in " ".join(p.cmdline())]
        assert len(servers) == 2 and (not embedded or any(
            "redis-server" in " ".join(p.cmdline()) for p in members))
        assert proxy.proc is not None
        proxy.proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        while not refuses(port) and time.monotonic() - killed < 10:
            time.sleep(0.01)
        refused_after = time.monotonic() - killed
        _, alive = psutil.wait_procs(members, timeout=10)
        assert alive == [], [p.cmdline() for p in alive]
        assert refuses(port)
        print(f"port refused {refused_after:.2f}s after SIGKILL of the supervisor; "
              f"all {len(members)} processes gone {time.monotonic() - killed:.2f}s after")
        assert refused_after < 5  # 1 s on a quiet machine; room for a busy one
    finally:
        proxy.kill()
    # A new proxy on the same port, with another data dir (another Redis, other tokens):
    # it serves alone, so every call with its token succeeds.
    fresh = ProxyProcess(None if embedded else redis_server.url, data_dir=tmp_path / "b",
                         port=port, extra_args=("--workers", "2"),
                         key_prefix="fresh" if not embedded else "ogs")
    with fresh:
        storage = GrpcJournalStorage(fresh.endpoint, token=fresh.issue_token("second"),
                                     use_session=False, read_staleness=0)
        for _ in range(12):
            storage.get_all_studies()
            storage.grpc_backend.client.close()  # a new connection each time
