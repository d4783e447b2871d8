"""python -m bench [--quick] [--only SCENARIO,...] [--json FILE]

Scenarios: throughput, cpu, build, join, server, memory, snapshot, lua, replicas, artifacts.

Runs Optuna's own backends and this project side by side on this machine, in one run, and
prints one table of ratios. --quick is for development (about two minutes); the full run
takes about eight on a 2-core machine. --build and --big change the study sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from bench import artifacts, cpu, harness, limits, replication, report

SCENARIOS = ("throughput", "cpu", "build", "join", "server", "memory", "snapshot", "lua",
             "replicas",
             "artifacts")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for development")
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios")
    parser.add_argument("--workers", default=None, help="worker counts, e.g. 1,8,32,64")
    parser.add_argument("--cpu-workers", default=None,
                        help="worker counts of the cpu scenario (default 1,32,64)")
    parser.add_argument("--build", type=int, help="trials of the build/join study "
                        "(default 20,000; quick 4,000)")
    parser.add_argument("--big", type=int, help="trials of the big join and memory study "
                        "(default 100,000; quick 20,000)")
    parser.add_argument("--snapshot-mib", type=int, default=200,
                        help="size of the snapshot of the snapshot scenario (default 200)")
    parser.add_argument("--artifact-mib", type=int, default=200,
                        help="size of the file of the artifacts scenario (default 200)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    only = set(args.only.split(","))
    quick = args.quick
    counts = [int(w) for w in (args.workers or ("1,8" if quick else "1,8,32,64")).split(",")]
    sizes = {
        "duration": 4.0 if quick else 12.0,
        "build": args.build or (4_000 if quick else 20_000),
        "big": args.big or (20_000 if quick else 100_000),
        "server_seconds": 3.0 if quick else 8.0,
    }
    results: dict[str, Any] = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                   f"Python {platform.python_version()}, {platform.system()}",
        "started": time.strftime("%Y-%m-%d %H:%M"),
        "quick": quick,
        "sizes": sizes,
    }
    harness.compile_checkout()
    stack = harness.Stack()
    try:
        if "throughput" in only:
            results["throughput"] = run_throughput(stack, counts, sizes["duration"])
        if "cpu" in only:
            results["cpu"] = cpu.split(stack, [int(w) for w in (
                args.cpu_workers or ("1,8" if quick else "1,32,64")).split(",")])
        if "build" in only or "join" in only:
            results["build"] = run_build_and_join(stack, sizes["build"], "join" in only)
        if "join" in only:
            results["big_join"] = harness.big_join(stack, sizes["big"])
        if "server" in only:
            results["server"] = harness.server_capacity(stack, sizes["server_seconds"])
        if "memory" in only:
            results["memory"] = harness.proxy_memory(stack, sizes["big"])
        if "snapshot" in only:
            results["snapshot"] = limits.snapshot_memory(stack.tmp, args.snapshot_mib)
        if "lua" in only:
            results["lua"] = limits.lua_worst_case(stack.tmp)
        if "replicas" in only:
            results["replicas"] = replication.append_cost(stack.tmp, quick)
        if "artifacts" in only:
            results["artifacts"] = artifacts.artifact_transfer(stack.tmp, args.artifact_mib)
    finally:
        stack.close()
    print(report.table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def run_throughput(stack: harness.Stack, counts: list[int], duration: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for w in counts:
        row: dict[str, Any] = {}
        for kind in ("file", "redis", "ours"):
            url = stack.redis.url if kind in ("redis", "ours") else None
            row[kind] = harness.throughput(stack.spec(kind), w, duration, url)
            print(f"  W={w:<3} {kind:6} {row[kind]['trials_per_s']:8.1f} trials/s", flush=True)
        if w == 8:
            row["optuna-grpc-proxy"] = harness.throughput(stack.optuna_grpc_proxy(), w,
                                                          duration, None)
            print(f"  W={w:<3} optuna-grpc-proxy "
                  f"{row['optuna-grpc-proxy']['trials_per_s']:8.1f} trials/s", flush=True)
        out[str(w)] = row
    return out


def run_build_and_join(stack: harness.Stack, n: int, with_join: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in ("ours", "redis"):
        spec = stack.spec(kind)
        out[kind] = harness.build(spec, n)
        print(f"  build {n} {kind}: first tenth {out[kind]['first_tenth']:.0f}/s, last "
              f"{out[kind]['last_tenth']:.0f}/s", flush=True)
        if with_join and kind == "ours":
            study = out[kind]["study"]
            out["join_ours"] = harness.join(spec, study)
            file_spec = harness.export_to_file(spec, stack.tmp / "exported.log")
            out["join_file"] = harness.join(file_spec, study)
            print(f"  join {n}: ours {out['join_ours']['seconds']:.2f}s, file "
                  f"{out['join_file']['seconds']:.2f}s", flush=True)
        if with_join and kind == "redis":
            out["join_redis"] = harness.join(spec, out[kind]["study"])
    return out


if __name__ == "__main__":
    raise SystemExit(main())
