"""What --min-replicas costs an append (issue 13): a master and one replica on loopback, two
proxies on that master, one with --min-replicas 1 and one without, measured in turns in the
same run: one caller's latency per append, and the appends per second of many callers."""

from __future__ import annotations

import json
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import redis

from bench.limits import Raw
from optuna_grpc_storage.protocol.v1 import journal_pb2 as pb
from storage_proxy.process.embedded_redis import RedisProcess
from storage_proxy.testing import ProxyProcess

SETTINGS = {"0": (), "1": ("--min-replicas", "1")}


def _entry(i: int) -> bytes:
    return json.dumps({"op_code": 10, "i": i, "pad": "x" * 200}).encode()


def _latencies(raw: Raw, journal: str, n: int, start: int) -> list[float]:
    out = []
    for i in range(start, start + n):
        t = time.perf_counter()
        raw.AppendLogs(pb.AppendLogsRequest(journal=journal, entries=[_entry(i)],
                                            client_id="one", sequence=i + 1))
        out.append(time.perf_counter() - t)
    return out


def _throughput(raw: Raw, journal: str, callers: int, seconds: float) -> float:
    done = [0] * callers
    stop = time.monotonic() + seconds

    def call(k: int) -> None:
        seq = 0
        while time.monotonic() < stop:
            seq += 1
            raw.AppendLogs(pb.AppendLogsRequest(journal=f"{journal}-{k % 4}",
                                                entries=[_entry(seq)], client_id=f"c{k}",
                                                sequence=seq))
            done[k] += 1

    threads = [threading.Thread(target=call, args=(k,)) for k in range(callers)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.monotonic() - started)


def append_cost(tmp: Path, quick: bool) -> dict[str, Any]:
    """Median and p99 latency of one caller's appends, and appends/s of 32 callers, for
    --min-replicas 0 and 1; each measured in 3 alternating turns."""
    master = RedisProcess(tmp / "rep-master", appendonly=False)
    master.start()
    replica = RedisProcess(tmp / "rep-replica", appendonly=False,
                           extra_args=("--replicaof", "127.0.0.1", str(master.port)))
    replica.start()
    proxies = {k: ProxyProcess(master.url, data_dir=tmp / f"rep-proxy-{k}", metrics_port=-1,
                               extra_args=("--workers", "1", *args))
               for k, args in SETTINGS.items()}
    try:
        deadline = time.monotonic() + 30
        while redis.Redis(port=replica.port).info("replication")[
                "master_link_status"] != "up":
            assert time.monotonic() < deadline, "the replica did not sync"
            time.sleep(0.1)
        raws = {}
        for k, p in proxies.items():
            p.start()
            raws[k] = Raw(p.endpoint, p.issue_token(f"bench{k}"))
        n, seconds = (200, 2.0) if quick else (1000, 5.0)
        lat: dict[str, list[float]] = {k: [] for k in SETTINGS}
        rate: dict[str, list[float]] = {k: [] for k in SETTINGS}
        for turn in range(3):
            for k in SETTINGS:
                lat[k] += _latencies(raws[k], "lat", n, turn * n)
                rate[k].append(_throughput(raws[k], f"rate{turn}", 32, seconds))
        out: dict[str, Any] = {"redis_version": master.version(), "appends": 3 * n}
        for k in SETTINGS:
            ranked = sorted(lat[k])
            out[k] = {"median_ms": statistics.median(ranked) * 1000,
                      "p99_ms": ranked[int(len(ranked) * 0.99)] * 1000,
                      "appends_per_s": statistics.median(rate[k])}
        return out
    finally:
        for p in proxies.values():
            p.stop()
        replica.stop()
        master.stop()


def report(r: dict[str, Any]) -> list[str]:
    zero, one = r["0"], r["1"]
    return [
        f"--min-replicas 1 vs 0 (Redis {r['redis_version']}, master + 1 replica on loopback, "
        f"one server process each; {r['appends']} sequential appends, then 32 callers):",
        f"- one caller, per append: median {zero['median_ms']:.2f} → {one['median_ms']:.2f} ms "
        f"({one['median_ms'] / zero['median_ms']:.2f}x), p99 {zero['p99_ms']:.2f} → "
        f"{one['p99_ms']:.2f} ms",
        f"- 32 callers: {zero['appends_per_s']:.0f} → {one['appends_per_s']:.0f} appends/s "
        f"({one['appends_per_s'] / zero['appends_per_s']:.2f}x)",
        "",
    ]
