"""What one tenant can cost the others (issue 14), measured: the proxy's peak RSS while it
takes a large snapshot and sends it to 3 readers at once, and the longest time one Redis call
(a Lua script or a command) runs at the default limits, from Redis' own SLOWLOG."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import redis

from bench.harness import PeakRSS
from optuna_grpc_storage.protocol.limits import Limits
from optuna_grpc_storage.protocol.v1 import journal_pb2 as pb
from optuna_grpc_storage.protocol.v1 import journal_pb2_grpc
from storage_proxy.process.embedded_redis import RedisProcess
from storage_proxy.redis import scripts
from storage_proxy.testing import ProxyProcess

LIMITS = Limits()
CHUNK = 1 << 20


class Raw:
    """The generated stub with a token: the bench sends exactly the requests it means."""

    def __init__(self, endpoint: str, token: str) -> None:
        self.channel = grpc.insecure_channel(endpoint, options=[
            ("grpc.max_send_message_length", 64 << 20),
            ("grpc.max_receive_message_length", 64 << 20)])
        self.stub = journal_pb2_grpc.JournalServiceStub(self.channel)
        self.metadata = (("authorization", f"Bearer {token}"),)

    def __getattr__(self, method: str) -> Any:
        call = getattr(self.stub, method)
        return lambda request: call(request, metadata=self.metadata, timeout=600)


def _stack(tmp: Path, name: str, *proxy_args: str) -> tuple[RedisProcess, ProxyProcess, Raw]:
    server = RedisProcess(tmp / f"{name}-redis", appendonly=False)
    server.start()
    proxy = ProxyProcess(server.url, data_dir=tmp / f"{name}-proxy", metrics_port=-1,
                         extra_args=("--workers", "1", *proxy_args))
    proxy.start()
    return server, proxy, Raw(proxy.endpoint, proxy.issue_token(name))


def _chunks(journal: str, position: int, data: bytes) -> Iterator[pb.SnapshotChunk]:
    yield pb.SnapshotChunk(journal=journal, position=position, data=data[:CHUNK])
    for offset in range(CHUNK, len(data), CHUNK):
        yield pb.SnapshotChunk(data=data[offset : offset + CHUNK])


def snapshot_memory(tmp: Path, size_mib: int = 200, readers: int = 3) -> dict[str, Any]:
    """Peak RSS of one server process taking a `size_mib` snapshot, then sending it to
    `readers` concurrent downloads (sampled every 5 ms)."""
    server, proxy, raw = _stack(tmp, "snapshot")
    try:
        assert proxy.proc is not None
        raw.AppendLogs(pb.AppendLogsRequest(journal="j", entries=[b'{"op_code": 10}']))
        data = os.urandom(size_mib << 20)
        got: list[int] = []

        def download() -> None:
            got.append(sum(len(c.data) for c in raw.LoadSnapshot(
                pb.LoadSnapshotRequest(journal="j"))))

        with PeakRSS(proxy.proc.pid) as rss:
            started = time.perf_counter()
            raw.SaveSnapshot(_chunks("j", 1, data))
            upload_s, upload_peak = time.perf_counter() - started, rss.peak
            threads = [threading.Thread(target=download) for _ in range(readers)]
            started = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            download_s = time.perf_counter() - started
        assert got == [len(data)] * readers
        return {"size_mib": size_mib, "readers": readers, "baseline_rss": rss.baseline,
                "upload_peak_rss": upload_peak, "peak_rss": rss.peak, "upload_s": upload_s,
                "download_s": download_s}
    finally:
        raw.channel.close()
        proxy.stop()
        server.stop()


def _entry(pad: int) -> bytes:
    return json.dumps({"op_code": 10, "pad": "x" * pad}).encode()


def _steps(raw: Raw) -> list[tuple[str, Callable[[], Any]]]:
    """The heaviest calls the default limits allow, in order, each a few times."""
    big = _entry(LIMITS.max_entry_bytes - 40)  # just under 1 MiB
    small = _entry(150)  # the size of an Optuna entry
    many = _entry(LIMITS.max_batch_bytes // LIMITS.max_batch_entries - 40)  # both limits
    ids = list(range(10_000))
    data = os.urandom(64 << 20)

    def append(journal: str, entries: list[bytes], **kw: Any) -> Callable[[], Any]:
        return lambda: raw.AppendLogs(pb.AppendLogsRequest(journal=journal, entries=entries,
                                                           **kw))

    def read(journal: str, position: int = 0) -> Callable[[], Any]:
        return lambda: list(raw.ReadLogs(pb.ReadLogsRequest(journal=journal,
                                                            position=position)))

    def snapshot(position: int) -> Callable[[], Any]:
        return lambda: (raw.SaveSnapshot(_chunks("big", position, data)), sum(
            len(c.data) for c in raw.LoadSnapshot(pb.LoadSnapshotRequest(journal="big"))))

    steps: list[tuple[str, Callable[[], Any]]] = []
    most, pair = LIMITS.max_batch_entries, LIMITS.max_batch_bytes // len(big)
    steps += [(f"append {most:,} entries, {LIMITS.max_batch_bytes >> 20} MiB",
               append("batches", [many] * most))] * 5
    steps += [(f"append {pair} entries of 1 MiB", append("big", [big] * pair))] * (150 // pair)
    steps += [("append from known_position=0 to 150 x 1 MiB",
               append("big", [small], client_id="late", sequence=seq, known_position=0))
              for seq in range(1, 6)]
    steps += [("read 150 x 1 MiB from 0 (per call)", read("big"))] * 5
    steps += [(f"append {most:,} small entries", append("long", [small] * most))] * (
        400_000 // most)
    steps += [("append from known_position=0 to 400,000 entries",
               append("long", [small], client_id="new", sequence=seq, known_position=0))
              for seq in range(1, 6)]
    steps += [("read 400,000 entries from 0 (per call)", read("long"))] * 5
    steps += [("read the last 1,000 of 400,000", read("long", 399_000))] * 5
    steps += [("heartbeats of 10,000 trials", lambda: raw.RecordHeartbeat(
        pb.RecordHeartbeatRequest(journal="long", trial_ids=ids)))] * 5
    steps += [("ages of 10,000 trials", lambda: raw.GetHeartbeats(
        pb.GetHeartbeatsRequest(journal="long", trial_ids=ids)))] * 5
    steps += [("save, replace and load a 64 MiB snapshot", snapshot(p)) for p in range(1, 6)]
    steps += [("delete a journal", lambda j=j: raw.DeleteJournal(
        pb.DeleteJournalRequest(journal=j))) for j in ("big", "long", "batches")]
    return steps


def _scripts_run(log: list[dict[str, Any]]) -> Iterator[tuple[str, int]]:
    """(script name, microseconds) of each script call in a SLOWLOG (Redis 6 also logs the
    commands a script runs: those are left out)."""
    for item in log:
        words = item["command"].split()
        if words[0].lower() == b"evalsha" and len(words) > 1:
            yield scripts.name_of(words[1].decode()), int(item["duration"])


def lua_worst_case(tmp: Path) -> dict[str, Any]:
    """For each repeat of each step of _steps, its longest script call (SLOWLOG: microseconds,
    script name; 0 if none took 0.1 ms)."""
    for path in (Path(scripts.__file__).parent / "lua").glob("*.lua"):
        scripts.source(path.stem)  # so that name_of knows every script's SHA1
    server, proxy, raw = _stack(tmp, "lua", "--cache-bytes", "0")  # every read to Redis
    try:
        with redis.Redis.from_url(server.url) as r:
            version = r.info("server")["redis_version"]
            # 100 us, not 0: Redis 6 logs each command a script runs too, which slows it
            r.config_set("slowlog-log-slower-than", 100)
            r.config_set("slowlog-max-len", 1_000_000)
            r.slowlog_reset()
            steps: dict[str, list[tuple[int, str]]] = {}
            started = time.perf_counter()
            for label, step in _steps(raw):
                step()
                longest = max(_scripts_run(r.slowlog_get(1_000_000)), default=None,
                              key=lambda run: run[1])
                r.slowlog_reset()
                steps.setdefault(label, []).append(
                    (longest[1], longest[0]) if longest else (0, "-"))
            seconds = time.perf_counter() - started
            peak = int(r.info("memory")["used_memory_peak"])
        return {"redis_version": version, "seconds": seconds, "steps": steps,
                "redis_peak_bytes": peak}
    finally:
        raw.channel.close()
        proxy.stop()
        server.stop()
