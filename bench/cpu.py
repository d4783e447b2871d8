"""Where a trial's CPU goes: W fresh worker processes share one study and run N trials in all
(RandomSampler, trivial objective, process start included), for our proxy, Optuna's
JournalFileBackend and JournalRedisBackend, one after the other in one run.

Our proxy runs twice on the same Redis: with one server process (`--workers 1`: what this
load needs, and on this machine the cores are the workers'), and with the default of one per
CPU, whose processes each batch their own share of a journal's appends and each read every
append's message, at a cost the second row shows.

Each worker is `python -m bench.workers`, a fresh interpreter as a trial Pod's would be. CPU
comes from each component's own counters: the workers' from the kernel's account of this
process's reaped children (RUSAGE_CHILDREN: everything from exec to exit) and from each
worker's own RUSAGE_SELF (split into process start with optuna's import, loading the study
with the storage's imports, the trials, and the rest: exit); the
proxy's from psutil, its process group's user + system time; Redis's from INFO cpu, and the
commands it executed from INFO commandstats, which counts the commands run inside Lua too.
The capacity line follows: trials (and requests) per CPU-second of the proxy.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from typing import Any

import psutil
import redis

from bench import harness
from storage_proxy.testing import ProxyProcess

KINDS = ("file", "redis", "ours", "ours_default")  # ours: --workers 1


def trials_for(n_workers: int) -> int:
    """N: 1,600 trials (the issue's study), 50 a worker beyond 32 workers."""
    return max(1600, 50 * n_workers)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def group_cpu(pid: int) -> float:
    """CPU-seconds of a process and every process below it (live ones and reaped ones)."""
    root = psutil.Process(pid)
    total = 0.0
    for p in [root, *root.children(recursive=True)]:
        try:
            t = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def redis_counters(url: str) -> tuple[float, dict[str, int]]:
    """Redis's CPU-seconds (main process, every thread) and its calls per command so far."""
    with redis.Redis.from_url(url) as client:
        cpu = client.info("cpu")
        stats = client.info("commandstats")
    calls = {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]), calls


def run(stack: harness.Stack, kind: str, n_workers: int, n_trials: int,
        proxy: ProxyProcess | None = None) -> dict[str, Any]:
    """One study of n_trials over n_workers; `proxy` (default the stack's) serves kind "ours"."""
    proxy = proxy or stack.proxy
    spec = stack.spec(kind)
    if kind == "ours":
        spec["endpoint"] = proxy.endpoint
    study = harness.create_study(spec)
    shares = [n_trials // n_workers + (i < n_trials % n_workers) for i in range(n_workers)]
    assert proxy.proc is not None
    proxy0, (redis0, calls0) = group_cpu(proxy.proc.pid), redis_counters(stack.redis.url)
    children0, began = _children_cpu(), time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "bench.workers", json.dumps(spec), study,
                               str(n)], stdout=subprocess.PIPE) for n in shares]
    reports = []
    try:
        for p in procs:
            out, _ = p.communicate(timeout=900)
            if p.returncode != 0:
                raise RuntimeError(f"a {kind} worker failed with exit code {p.returncode}")
            reports.append(json.loads(out.decode().strip().splitlines()[-1]))
    finally:  # interrupted or failed: no worker outlives the benchmark
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    wall = time.perf_counter() - began
    workers_cpu = _children_cpu() - children0
    proxy1, (redis1, calls1) = group_cpu(proxy.proc.pid), redis_counters(stack.redis.url)
    commands = {c: n - calls0.get(c, 0) for c, n in calls1.items() if c != "info"}
    commands = {c: n for c, n in commands.items() if n > 0}
    uses_proxy, uses_redis = kind == "ours", kind in ("redis", "ours")
    requests = sum(sum(r["calls"].values()) for r in reports)
    return {
        "workers": n_workers, "trials": n_trials, "seconds": wall,
        "trials_per_s": n_trials / wall,
        "worker_ms": 1000 * workers_cpu / n_trials,
        "worker_start_ms": 1000 * sum(r["start_cpu"] for r in reports) / n_trials,
        "worker_exit_ms": 1000 * (workers_cpu - sum(r["start_cpu"] + r["load_cpu"]
                                                    + r["trials_cpu"] for r in reports)) / n_trials,
        "worker_load_ms": 1000 * sum(r["load_cpu"] for r in reports) / n_trials,
        "worker_trials_ms": 1000 * sum(r["trials_cpu"] for r in reports) / n_trials,
        "proxy_ms": 1000 * (proxy1 - proxy0) / n_trials if uses_proxy else None,
        "redis_ms": 1000 * (redis1 - redis0) / n_trials if uses_redis else None,
        "redis_commands": sum(commands.values()) / n_trials if uses_redis else None,
        "commands": commands if uses_redis else None,
        "requests_per_trial": requests / n_trials if uses_proxy else None,
    }


def split(stack: harness.Stack, counts: list[int]) -> dict[str, Any]:
    with ProxyProcess(stack.redis.url, data_dir=stack.tmp / "proxy-1",
                      extra_args=("--workers", "1")) as single:
        return _split(stack, single, counts)


def _split(stack: harness.Stack, single: ProxyProcess, counts: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {"processes": len(server_processes(stack.proxy))}
    for w in counts:
        row = {}
        for kind in KINDS:
            backend, proxy = ("ours", stack.proxy) if kind == "ours_default" else (kind, single)
            row[kind] = r = run(stack, backend, w, trials_for(w), proxy)
            extra = (f" proxy {r['proxy_ms']:.2f} ms" if r["proxy_ms"] is not None else "") + (
                f" redis {r['redis_ms']:.2f} ms, {r['redis_commands']:.1f} commands"
                if r["redis_ms"] is not None else "")
            print(f"  cpu W={w:<3} {kind:12} {r['trials_per_s']:7.1f} trials/s; per trial: "
                  f"workers {r['worker_ms']:.2f} ms (trials {r['worker_trials_ms']:.2f}){extra}",
                  flush=True)
        out[str(w)] = row
    out["round_trip"] = round_trips(stack, single)
    return out


def server_processes(proxy: ProxyProcess) -> list[psutil.Process]:
    assert proxy.proc is not None
    return [p for p in psutil.Process(proxy.proc.pid).children(recursive=True)
            if "spawn_main" in " ".join(p.cmdline())] or [psutil.Process(proxy.proc.pid)]


def round_trips(stack: harness.Stack, proxy: ProxyProcess, n: int = 1000) -> dict[str, Any]:
    """One client alone, n appends of one small entry then n reads that find nothing new
    (read_staleness 0): the wall time of each and the CPU each component spent on it."""
    from optuna_grpc_storage import GrpcJournalBackend

    spec = stack.spec("ours")
    backend = GrpcJournalBackend(proxy.endpoint, token=spec["token"], journal=spec["journal"],
                                 read_staleness=0.0)
    entry = {"op_code": 0, "worker_id": "w", "study_name": "s", "directions": [1]}
    backend.append_logs([entry])  # connect, subscribe
    backend.read_logs(0)
    out = {}
    for name, step in (("append", lambda: backend.append_logs([entry])),
                       ("read", lambda: backend.read_logs(backend._next))):
        out[name] = _timed_calls(stack, proxy, step, n)
    backend.client.close()
    return out


def _timed_calls(stack: harness.Stack, proxy: ProxyProcess, step: Any,
                 n: int) -> dict[str, float]:
    assert proxy.proc is not None
    me = psutil.Process()
    proxy0, (redis0, _) = group_cpu(proxy.proc.pid), redis_counters(stack.redis.url)
    client0, began = sum(me.cpu_times()[:2]), time.perf_counter()
    for _ in range(n):
        step()
    wall = time.perf_counter() - began
    client = sum(me.cpu_times()[:2]) - client0
    proxy1, (redis1, _) = group_cpu(proxy.proc.pid), redis_counters(stack.redis.url)
    us = 1e6 / n
    return {"wall_us": wall * us, "client_us": client * us, "proxy_us": (proxy1 - proxy0) * us,
            "redis_us": (redis1 - redis0) * us}
