"""Run the load test (`make loadtest`) or the soak (`make soak`) against a Redis and a proxy of
its own on 127.0.0.1, and report the proxy's memory next to locust's latencies.

    python loadtests/run.py            # 1,000 Pods for 60 s: the command of the README
    python loadtests/run.py --soak     # steady load for 10 minutes, RSS and p99 over time

It starts redis-server (AOF, appendfsync everysec as the embedded default) and
`storage-proxy serve` on port 13000 (or a free port if 13000 is taken), issues a token, runs

    locust -f loadtests/locustfile.py --headless -u 1000 -r 100 -t 60s --host 127.0.0.1:13000

with OPTUNA_GRPC_STORAGE_TOKEN set, samples the proxy's resident memory while it runs, stops
everything and exits with locust's exit code (non-zero on any failure or integrity problem).
"""

from __future__ import annotations

import argparse
import csv
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from storage_proxy.process.embedded_redis import RedisProcess, free_port
from storage_proxy.testing import ProxyProcess

HERE = Path(__file__).resolve().parent


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Sampler(threading.Thread):
    """Every `every` seconds: (seconds since start, proxy RSS MB, Redis RSS MB, proxy CPU %
    of one core and Redis CPU % over the interval)."""

    def __init__(self, proxy_pid: int, redis_pid: int, every: float) -> None:
        super().__init__(daemon=True)
        self.pids, self.every = (proxy_pid, redis_pid), every
        self.samples: list[tuple[float, float, float, float, float]] = []
        self.stop = threading.Event()
        self.started = time.monotonic()

    def run(self) -> None:
        last = (self.started, *map(cpu_seconds, self.pids))
        while not self.stop.wait(self.every):
            try:
                proxy, redis = (rss_mb(p) for p in self.pids)
                now = (time.monotonic(), *map(cpu_seconds, self.pids))
            except OSError:
                return
            span = now[0] - last[0]
            cpu = [100 * (now[i] - last[i]) / span for i in (1, 2)]
            self.samples.append((now[0] - self.started, proxy, redis, *cpu))
            last = now


def p99_history(csv_prefix: Path) -> list[tuple[int, float, float, float]]:
    """(unix time, requests/s, p50 ms, p99 ms) of the last 10 s, from locust's history CSV."""
    path = Path(f"{csv_prefix}_stats_history.csv")
    if not path.exists():
        return []
    out = []
    with path.open() as f:
        for row in csv.DictReader(f):
            if row["Name"] == "Aggregated" and row["99%"] not in ("N/A", ""):
                out.append((int(row["Timestamp"]), float(row["Requests/s"]),
                            float(row["50%"]), float(row["99%"])))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--soak", action="store_true", help="steady load for --minutes")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--users", type=int, help="Pods (1000; soak: 300)")
    parser.add_argument("--port", type=int, default=13000)
    args = parser.parse_args()

    port = args.port if port_free(args.port) else free_port()
    if port != args.port:
        print(f"port {args.port} is taken; using {port}", flush=True)
    users = args.users or (300 if args.soak else 1000)
    seconds = int(args.minutes * 60) if args.soak else 60
    with tempfile.TemporaryDirectory(prefix="loadtest-") as tmp:
        redis = RedisProcess(Path(tmp) / "redis", appendfsync="everysec")
        redis.start()
        proxy = ProxyProcess(redis.url, data_dir=Path(tmp) / "proxy", port=port)
        try:
            proxy.start()
            token = proxy.issue_token("loadtest")
            csv_prefix = Path(tmp) / "locust"
            locust_args = ["-f", os.path.relpath(HERE / "locustfile.py"), "--headless",
                           "-u", str(users), "-r", "100", "-t", f"{seconds}s",
                           "--host", proxy.endpoint]
            if args.soak:
                locust_args += ["--csv", str(csv_prefix), "--csv-full-history",
                                "--only-summary"]
            print("$ OPTUNA_GRPC_STORAGE_TOKEN=... locust " + " ".join(locust_args), flush=True)
            command = [str(Path(sys.executable).parent / "locust"), *locust_args]
            assert proxy.proc is not None and redis.proc is not None
            sampler = Sampler(proxy.proc.pid, redis.proc.pid, 30.0 if args.soak else 5.0)
            sampler.start()
            code = subprocess.run(command, env={**os.environ, "OPTUNA_GRPC_STORAGE_TOKEN":
                                                token}).returncode
            sampler.stop.set()
            sampler.join()
            report(sampler.samples, p99_history(csv_prefix) if args.soak else [])
            log = proxy.log_path.read_text(errors="replace")
            notes = [line for line in log.splitlines() if " WARNING " in line
                     or " ERROR " in line]
            startup = ("oO0OoO0OoO0Oo", "Redis version=", "Configuration loaded",
                       "Server initialized", "WARNING Memory overcommit")
            notes += [f"redis: {line}" for line in redis.log_path.read_text(
                errors="replace").splitlines()
                if " # " in line and not any(s in line for s in startup)]
            if notes:
                print(f"\n{len(notes)} warnings in the proxy and Redis logs (first 20):")
                print("\n".join(notes[:20]))
            if "Traceback" in log:
                print("the proxy logged a traceback:\n" + proxy.log_tail())
                code = code or 1
        finally:
            proxy.stop()
            redis.stop()
    print(f"locust exit code {code}")
    return code


def report(samples: list[tuple[float, float, float, float, float]],
           history: list[tuple[int, float, float, float]]) -> None:
    if not samples:
        return
    print("\n  time   proxy RSS  proxy CPU   Redis RSS  Redis CPU   req/s   p50 ms   p99 ms")
    start = history[0][0] if history else 0
    for t, proxy, redis, proxy_cpu, redis_cpu in samples:
        near = [h for h in history if abs((h[0] - start) - t) <= 5]
        rps, p50, p99 = (f"{near[-1][1]:6.0f}", f"{near[-1][2]:6.0f}", f"{near[-1][3]:6.0f}") \
            if near else ("     -", "     -", "     -")
        print(f"{t:5.0f}s   {proxy:6.1f} MB  {proxy_cpu:7.0f} %   {redis:6.1f} MB  "
              f"{redis_cpu:7.0f} %  {rps}   {p50}   {p99}")
    rss = [s[1] for s in samples]
    print(f"proxy RSS: first sample {rss[0]:.1f} MB, last {rss[-1]:.1f} MB, max {max(rss):.1f} MB;"
          f" proxy CPU mean {sum(s[3] for s in samples) / len(samples):.0f} % of one core")
    if history:
        p99s = [h[3] for h in history]
        third = max(len(p99s) // 3, 1)
        print(f"p99 over 10 s windows: first third median {sorted(p99s[:third])[third // 2]:.0f}"
              f" ms, last third median {sorted(p99s[-third:])[third // 2]:.0f} ms, "
              f"max {max(p99s):.0f} ms")


if __name__ == "__main__":
    raise SystemExit(main())
