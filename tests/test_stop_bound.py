"""A SIGTERM'd proxy exits within drain + grace + 5 s whatever its Redis does: stopped
(SIGSTOP: connections hang, nothing is refused) or dead, with calls in flight that wait on it,
with one server process or a group. Every process of the group is gone by then."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import grpc
import psutil
import pytest

from optuna_grpc_storage.protocol.v1 import journal_pb2 as pb
from storage_proxy.process.children import start_child
from storage_proxy.process.embedded_redis import RedisProcess
from storage_proxy.testing import ProxyProcess
from tests.conftest import RawClient

DRAIN, GRACE = 1.0, 2.0
BOUND = DRAIN + GRACE + 5  # issue 13: drain + grace + 5 s, whether Redis is reachable or not


# A client storage (its own retries and Session stream) calling until killed: in a process of
# its own, since its retries outlast the proxy (a thread of the test's process would still be
# retrying in later tests, and hold up their forks: fork.py waits for a busy storage).
STORAGE_CALLER = """
import sys
from optuna_grpc_storage import GrpcJournalStorage
storage = GrpcJournalStorage(sys.argv[1], token=sys.argv[2], read_staleness=0,
                             retry_deadline=120)
storage.get_all_studies()
print("calling", flush=True)
while True:
    try:
        storage.get_all_studies()
    except Exception:
        pass
"""


class Callers:
    """Threads that keep calls in flight until stopped: raw appends and reads (no retries,
    long deadlines), and a process with a client storage."""

    def __init__(self, endpoint: str, token: str) -> None:
        self.endpoint, self.token = endpoint, token
        self.halt = threading.Event()
        self.calls = 0
        self.threads = [threading.Thread(target=self._raw, args=(i,), daemon=True)
                        for i in range(6)]
        self.storage: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.storage = start_child([sys.executable, "-c", STORAGE_CALLER, self.endpoint,
                                    self.token], stdout=subprocess.PIPE)
        for t in self.threads:
            t.start()
        assert self.storage.stdout is not None
        assert self.storage.stdout.readline() == b"calling\n"  # its calls are under way

    def _raw(self, i: int) -> None:
        raw = RawClient(self.endpoint, self.token)
        seq = 0
        while not self.halt.is_set():
            seq += 1
            try:
                if i % 2:
                    list(raw.stub.ReadLogs(pb.ReadLogsRequest(journal="j"),
                                           metadata=raw.metadata, timeout=120))
                else:
                    entry = json.dumps({"op_code": 10, "i": i, "seq": seq}).encode()
                    raw.stub.AppendLogs(pb.AppendLogsRequest(
                        journal="j", entries=[entry], client_id=f"c{i}", sequence=seq),
                        metadata=raw.metadata, timeout=120)
                self.calls += 1
            except grpc.RpcError:
                time.sleep(0.05)
        raw.channel.close()

    def stop(self) -> None:
        self.halt.set()
        if self.storage is not None:
            self.storage.kill()
            self.storage.wait()
        for t in self.threads:
            t.join(1)


def group_of(proxy: ProxyProcess) -> list[psutil.Process]:
    assert proxy.proc is not None
    return [psutil.Process(proxy.proc.pid),
            *psutil.Process(proxy.proc.pid).children(recursive=True)]


def running(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def stop_and_time(proxy: ProxyProcess, what: str) -> None:
    """SIGTERM the proxy; assert that every process of its group is gone within BOUND."""
    members = group_of(proxy)
    assert proxy.proc is not None
    proxy.proc.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    alive = members
    while alive and time.monotonic() - signalled < BOUND + 30:
        proxy.proc.poll()  # reap the supervisor
        alive = [p for p in alive if running(p)]
        time.sleep(0.01)  # (psutil.wait_procs polls ever more slowly: it would add seconds)
    took = time.monotonic() - signalled
    print(f"{what}: every process of the proxy gone {took:.1f}s after SIGTERM "
          f"(bound {BOUND:.1f}s)")
    assert alive == [], [p.cmdline() for p in alive]
    assert took <= BOUND, f"the proxy took {took:.1f}s to exit (bound {BOUND:.1f}s)"


def start(proxy: ProxyProcess) -> Callers:
    proxy.start()
    callers = Callers(proxy.endpoint, proxy.issue_token("stopper"))
    callers.start()
    deadline = time.monotonic() + 30
    while callers.calls < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert callers.calls >= 20  # every kind of call works before the fault
    return callers


def arguments(workers: int) -> tuple[str, ...]:
    return ("--workers", str(workers), "--drain-seconds", str(DRAIN),
            "--grace-seconds", str(GRACE))


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("fault", ["stopped", "dead"])
def test_sigterm_exits_within_the_bound_whatever_redis_does(tmp_path, fault: str,
                                                             workers: int) -> None:
    redis = RedisProcess(tmp_path / "redis", appendonly=False)
    redis.start()
    proxy = ProxyProcess(redis.url, data_dir=tmp_path / "proxy", extra_args=arguments(workers))
    callers = start(proxy)
    try:
        assert redis.proc is not None
        if fault == "stopped":  # connections hang: nothing is refused, nothing answered
            os.kill(redis.proc.pid, signal.SIGSTOP)
        else:
            redis.kill()
        time.sleep(1.5)  # calls pile up on the missing Redis (and new ones keep coming)
        stop_and_time(proxy, f"redis {fault}, --workers {workers}")
        assert proxy.proc is not None and proxy.proc.wait(1) in (0, 1)  # not killed
    finally:
        callers.stop()
        proxy.kill()
        if fault == "stopped" and redis.proc is not None:
            os.kill(redis.proc.pid, signal.SIGCONT)
        redis.stop()


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_exits_within_the_bound_with_its_embedded_redis_stopped(
        tmp_path, workers: int) -> None:
    """The embedded Redis is the proxy's own child: a stopped one is continued so it can shut
    down (flushing its AOF), and killed if it cannot do so in the time left."""
    proxy = ProxyProcess(None, data_dir=tmp_path / "proxy", extra_args=arguments(workers))
    callers = start(proxy)
    try:
        embedded = [p for p in group_of(proxy) if "redis-server" in " ".join(p.cmdline())]
        assert len(embedded) == 1
        embedded[0].suspend()  # SIGSTOP
        time.sleep(1.5)
        stop_and_time(proxy, f"embedded redis stopped, --workers {workers}")
    finally:
        callers.stop()
        proxy.kill()


def test_a_hung_server_process_does_not_hold_the_group(redis_server, tmp_path) -> None:
    """A server process that cannot end by itself (SIGSTOP stands in for a hang of its event
    loop) is killed by the supervisor in time, and the others stop cleanly."""
    proxy = ProxyProcess(redis_server.url, data_dir=tmp_path / "proxy",
                         extra_args=arguments(2))
    callers = start(proxy)
    try:
        servers = [p for p in group_of(proxy) if "spawn_main" in " ".join(p.cmdline())]
        assert len(servers) == 2
        servers[0].suspend()
        stop_and_time(proxy, "one server process hung, --workers 2")
        assert f"server process {servers[0].pid} still running" in proxy.log_tail()
    finally:
        callers.stop()
        proxy.kill()


def test_the_watchdog_ends_a_process_that_hangs_after_its_stop_signal() -> None:
    """What ends a lone server process whose stop hangs where nothing else can reach it (the
    event loop stuck in a busy loop that holds the GIL): the watchdog armed at the first stop
    signal, at drain + grace + its share; it writes the stacks to stderr first."""
    code = ("from storage_proxy.process.stopping import StopSignals\n"
            "StopSignals(share=0.5).received(0.2, 0.3)\n"
            "while True: pass\n")
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    took = time.monotonic() - started
    assert done.returncode == 1
    assert "Timeout" in done.stderr and "<string>" in done.stderr  # where it hung
    assert took < 30  # ended by the watchdog at about 1 s, not by the timeout above
