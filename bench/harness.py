"""Start what a benchmark needs (Redis, our proxy, Optuna's gRPC proxy) and run worker pools."""

from __future__ import annotations

import compileall
import itertools
import json
import multiprocessing
import queue
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import optuna
import psutil
import redis

from bench import reference, workers
from storage_proxy.process.embedded_redis import RedisProcess, free_port
from storage_proxy.testing import ProxyProcess

CTX = multiprocessing.get_context("spawn")


# Commands each kind of client sends to Redis itself (the rest of what Redis executes runs
# inside their Lua scripts): JournalRedisBackend GETs entries, SETNXes and EVALs its append
# script; our proxy EVALSHAs its scripts, GETs tokens, PINGs for health and SADDs new
# journals (plus, every 5 s, one pipelined LLEN per cached journal, not counted here).
SENT = {"redis": ("get", "setnx", "eval"), "ours": ("evalsha", "get", "ping", "sadd")}


class PeakRSS:
    """The largest RSS of one process while the `with` block runs, sampled every 5 ms by a
    thread: `baseline` at the start, `peak` so far (readable inside the block too)."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.baseline = self.peak = self.process.memory_info().rss
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample)

    def _sample(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.005)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


def redis_counts(url: str, kind: str) -> tuple[int, int]:
    """(commands executed, commands sent by clients) so far."""
    with redis.Redis.from_url(url) as client:
        executed = int(client.info("stats")["total_commands_processed"])
        stats = client.info("commandstats")
    sent = sum(stats.get(f"cmdstat_{c}", {}).get("calls", 0) for c in SENT.get(kind, ()))
    return executed, sent


def compile_checkout() -> None:
    """Bytecode for this checkout's packages, as an installed wheel has (pip compiles at
    install): Optuna's and gRPC's come compiled, and without this every worker process of an
    editable checkout under PYTHONDONTWRITEBYTECODE would compile ours from source (~20 ms of
    CPU a process, charged to our backend alone)."""
    root = Path(__file__).resolve().parent.parent
    for package in ("optuna_grpc_storage", "storage_proxy", "bench"):
        compileall.compile_dir(root / package, quiet=1)


class Stack:
    """One Redis (AOF everysec, as the embedded default), our proxy on it, a scratch dir."""

    def __init__(self, proxy_args: tuple[str, ...] = ()) -> None:
        self.stack = ExitStack()
        self.tmp = Path(self.stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-")))
        self.redis = RedisProcess(self.tmp / "redis")
        self.redis.start()
        self.stack.callback(self.redis.stop)
        self.proxy = ProxyProcess(self.redis.url, data_dir=self.tmp / "proxy",
                                  extra_args=proxy_args)
        self.proxy.start()
        self.stack.callback(self.proxy.stop)
        self.token = self.proxy.issue_token("bench")

    def close(self) -> None:
        self.stack.close()

    def spec(self, kind: str) -> dict[str, Any]:
        """A fresh storage of the given kind (a new file, prefix or journal each time)."""
        name = uuid.uuid4().hex[:8]
        if kind == "file":
            return {"kind": "file", "path": str(self.tmp / f"{name}.log")}
        if kind == "redis":
            return {"kind": "redis", "url": self.redis.url, "prefix": name}
        if kind == "ours":
            return {"kind": "ours", "endpoint": self.proxy.endpoint, "token": self.token,
                    "journal": name}
        raise ValueError(kind)

    def optuna_grpc_proxy(self) -> dict[str, Any]:
        """Optuna's own GrpcStorageProxy server in front of a journal file."""
        port = free_port()
        path = self.tmp / f"grpc-{port}.log"
        code = ("import optuna, sys; optuna.logging.set_verbosity(optuna.logging.ERROR); "
                "from optuna.storages.journal import JournalFileBackend; "
                "optuna.storages.run_grpc_proxy_server(optuna.storages.JournalStorage("
                f"JournalFileBackend({str(path)!r})), host='127.0.0.1', port={port})")
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        self.stack.callback(proc.kill)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return {"kind": "optuna-grpc-proxy", "port": port}
            time.sleep(0.1)
        raise RuntimeError("Optuna's gRPC proxy did not start")


def create_study(spec: dict[str, Any]) -> str:
    name = "bench-" + uuid.uuid4().hex[:8]
    optuna.create_study(study_name=name, storage=workers.make_storage(spec))
    return name


def _collect(results: Any, n: int, timeout: float) -> list[dict[str, Any]]:
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        try:
            out.append(results.get(timeout=max(deadline - time.monotonic(), 0.1)))
        except queue.Empty:
            raise RuntimeError(f"only {len(out)} of {n} workers reported") from None
    return out


def throughput(spec: dict[str, Any], n_workers: int, duration: float,
               redis_url: str | None) -> dict[str, Any]:
    """n_workers processes optimise one study for `duration` seconds from a common start."""
    study = create_study(spec)
    start = CTX.Barrier(n_workers + 1)
    results = CTX.Queue()
    procs = [CTX.Process(target=workers.timed_worker,
                         args=(spec, study, duration, start, results)) for _ in range(n_workers)]
    for p in procs:
        p.start()
    start.wait(timeout=300)
    before = redis_counts(redis_url, spec["kind"]) if redis_url else (0, 0)
    reports = _collect(results, n_workers, duration + 300)
    after = redis_counts(redis_url, spec["kind"]) if redis_url else (0, 0)
    executed, sent = after[0] - before[0] - 2, after[1] - before[1]
    for p in procs:
        p.join()
    trials = sum(r["trials"] for r in reports)
    elapsed = max(r["elapsed"] for r in reports)
    calls = sum(sum(r["calls"].values()) for r in reports)
    return {
        "trials_per_s": trials / elapsed,
        "trials": trials,
        "redis_commands_per_trial": executed / trials if redis_url else None,
        "redis_sent_per_trial": sent / trials if redis_url else None,
        "grpc_calls_per_trial": calls / trials if spec["kind"] == "ours" else None,
        "appends_per_trial": (sum(r["calls"].get("append", 0) for r in reports) / trials
                              if spec["kind"] == "ours" else None),
    }


def build(spec: dict[str, Any], n_trials: int) -> dict[str, Any]:
    """One writer builds n_trials; compare the rate of the last tenth with the first."""
    study = create_study(spec)
    results = CTX.Queue()
    proc = CTX.Process(target=workers.build_worker, args=(spec, study, n_trials, results))
    proc.start()
    report = _collect(results, 1, 3600)[0]
    proc.join()
    marks = [report["began"], *report["marks"]]
    rates = [report["step"] / (b - a) for a, b in itertools.pairwise(marks)]
    return {"study": study, "first_tenth": rates[0], "last_tenth": rates[-1],
            "flatness": rates[-1] / rates[0], "seconds": marks[-1] - marks[0]}


def join(spec: dict[str, Any], study: str, repeat: int = 3) -> dict[str, Any]:
    """Best of `repeat` fresh processes joining the study."""
    best = None
    for _ in range(repeat):
        results = CTX.Queue()
        proc = CTX.Process(target=workers.join_worker, args=(spec, study, results))
        proc.start()
        report = _collect(results, 1, 600)[0]
        proc.join()
        if best is None or report["seconds"] < best["seconds"]:
            best = report
    assert best is not None
    return best


def export_to_file(spec: dict[str, Any], path: Path) -> dict[str, Any]:
    """Write our journal as a JournalFileBackend file (JSON lines), for a like-for-like join."""
    from optuna_grpc_storage import GrpcJournalBackend

    backend = GrpcJournalBackend(spec["endpoint"], token=spec["token"], journal=spec["journal"])
    with open(path, "w") as f:
        for entry in backend.read_logs(0):
            f.write(json.dumps(entry) + "\n")
    return {"kind": "file", "path": str(path)}


def big_study(stack: Stack, n_trials: int) -> dict[str, Any]:
    """A journal of n_trials trials on our proxy (built in memory, pushed in batches, then
    snapshotted as a long-running study would be), made once per run."""
    if getattr(stack, "big", None):
        return stack.big
    from optuna_grpc_storage import GrpcJournalBackend, GrpcJournalStorage

    _, lines = reference.build_study("big", n_trials, workers.objective)
    spec = stack.spec("ours")
    backend = GrpcJournalBackend(spec["endpoint"], token=spec["token"], journal=spec["journal"])
    for i in range(0, len(lines), 5_000):
        backend.append_json(lines[i : i + 5_000])
    GrpcJournalStorage(spec["endpoint"], token=spec["token"],
                       journal=spec["journal"]).take_snapshot()
    stack.big = {"spec": spec, "study": "big", "trials": n_trials, "entries": len(lines)}
    return stack.big


def big_join(stack: Stack, n_trials: int) -> dict[str, Any]:
    big = big_study(stack, n_trials)
    ours = join(big["spec"], big["study"])
    file_spec = export_to_file(big["spec"], stack.tmp / "big.log")
    return {"trials": n_trials, "ours": ours, "file": join(file_spec, big["study"], repeat=1)}


def proxy_memory(stack: Stack, n_trials: int) -> dict[str, Any]:
    """RSS the proxy gains by holding a whole journal in its cache, against Redis's bytes."""
    import psutil

    from optuna_grpc_storage import GrpcJournalBackend

    big = big_study(stack, n_trials)
    spec = big["spec"]
    proxy = ProxyProcess(stack.redis.url, data_dir=stack.tmp / "memproxy",
                         extra_args=("--workers", "1"))
    proxy.start()
    try:
        assert proxy.proc is not None
        process = psutil.Process(proxy.proc.pid)

        def rss() -> int:
            return sum(p.memory_info().rss for p in [process, *process.children(True)])

        before = rss()
        entries = 0
        for _ in range(3):  # the first read subscribes, a later one fills the cache
            backend = GrpcJournalBackend(proxy.endpoint, token=spec["token"],
                                         journal=spec["journal"])
            entries = len(backend.read_logs(0))
            time.sleep(0.5)
        after = rss()
    finally:
        proxy.stop()
    with redis.Redis.from_url(stack.redis.url) as client:
        key = f"ogs:j:{{bench/{spec['journal']}}}:log"
        in_redis = int(client.memory_usage(key, samples=0) or 0)
    return {"entries": entries, "proxy_rss_gain": after - before, "redis_bytes": in_redis,
            "ratio": (after - before) / in_redis if in_redis else None}


def server_capacity(stack: Stack, seconds: float, callers: int = 1000) -> dict[str, Any]:
    """One proxy process against a bare grpc.aio echo server, same load generator: calls/s
    served, and calls per CPU-second the server used (what one process can sustain, whatever
    the load generator's own limits on this machine)."""
    import psutil

    port = free_port()
    echo = subprocess.Popen([sys.executable, "-m", "bench.server_load", "echo", "--port",
                             str(port)])
    proxy = ProxyProcess(stack.redis.url, data_dir=stack.tmp / "capacity",
                         extra_args=("--workers", "1"))
    proxy.start()
    token = proxy.issue_token("load")
    try:
        time.sleep(1.0)

        def measure(target: str, call: str, pid: int) -> dict[str, float]:
            server = psutil.Process(pid)
            cpu = sum(server.cpu_times()[:2])
            out = subprocess.run(
                [sys.executable, "-m", "bench.server_load", "load", "--target", target,
                 "--call", call, "--callers", str(callers), "--seconds", str(seconds),
                 "--token", token], capture_output=True, text=True, check=True)
            rate = float(json.loads(out.stdout.strip().splitlines()[-1])["calls_per_s"])
            used = sum(server.cpu_times()[:2]) - cpu
            return {"calls_per_s": rate, "calls_per_cpu_s": rate * seconds / used}

        assert proxy.proc is not None
        return {"callers": callers,
                "echo": measure(f"127.0.0.1:{port}", "echo", echo.pid),
                "read": measure(proxy.endpoint, "read", proxy.proc.pid),
                "append": measure(proxy.endpoint, "append", proxy.proc.pid)}
    finally:
        proxy.stop()
        echo.kill()
