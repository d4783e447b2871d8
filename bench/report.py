"""Turn benchmark results into the one table the README quotes."""

from __future__ import annotations

from typing import Any

from bench import replication


def _f(value: float | None, fmt: str = "{:.0f}") -> str:
    return "—" if value is None else fmt.format(value)


def table(r: dict[str, Any]) -> str:
    lines = [f"optuna-grpc-storage benchmark — {r['machine']} — {r['started']}"
             + (" (quick)" if r["quick"] else ""), ""]
    if "throughput" in r:
        lines += [
            "| W | file trials/s | redis trials/s | optuna-grpc-proxy trials/s | ours trials/s "
            "| ours/file | ours/redis | Redis commands sent/trial (redis → ours) "
            "| Redis commands executed/trial (redis → ours) | requests to the proxy/trial "
            "(appends/trial) |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for w, row in r["throughput"].items():
            f, rd, o = row["file"], row["redis"], row["ours"]
            g = row.get("optuna-grpc-proxy")
            lines.append(
                f"| {w} | {_f(f['trials_per_s'])} | {_f(rd['trials_per_s'])} | "
                f"{_f(g['trials_per_s']) if g else '—'} | {_f(o['trials_per_s'])} | "
                f"{o['trials_per_s'] / f['trials_per_s']:.2f}x | "
                f"{o['trials_per_s'] / rd['trials_per_s']:.2f}x | "
                f"{_f(rd['redis_sent_per_trial'], '{:.1f}')} → "
                f"{_f(o['redis_sent_per_trial'], '{:.2f}')} | "
                f"{_f(rd['redis_commands_per_trial'], '{:.1f}')} → "
                f"{_f(o['redis_commands_per_trial'], '{:.2f}')} | "
                f"{_f(o['grpc_calls_per_trial'], '{:.2f}')} "
                f"({_f(o['appends_per_trial'], '{:.2f}')}) |")
        lines.append("")
    if "cpu" in r:
        lines += _cpu(r["cpu"])
    if "build" in r:
        b = r["build"]
        n = r["sizes"]["build"]
        lines.append(f"Build of {n:,} trials by one writer (trials/s, first tenth → last tenth):")
        for kind in ("ours", "redis"):
            if kind in b:
                lines.append(f"- {kind}: {b[kind]['first_tenth']:.0f} → "
                             f"{b[kind]['last_tenth']:.0f} ({b[kind]['flatness']:.2f}x)")
        if "join_ours" in b:
            o, f = b["join_ours"]["seconds"], b["join_file"]["seconds"]
            rd = b.get("join_redis", {}).get("seconds")
            lines.append(f"- a fresh process joins it (load_study + get_trials): ours {o:.2f} s, "
                         f"JournalFileBackend {f:.2f} s ({o / f:.2f}x), JournalRedisBackend "
                         f"{_f(rd, '{:.2f}')} s")
        lines.append("")
    if "big_join" in r:
        j = r["big_join"]
        lines.append(f"Join of a {j['trials']:,}-trial study: ours {j['ours']['seconds']:.2f} s, "
                     f"JournalFileBackend {j['file']['seconds']:.2f} s")
        lines.append("")
    if "server" in r:
        s = r["server"]
        e = s["echo"]
        lines.append(f"One server process at {s['callers']:,} concurrent callers "
                     "(calls/s served; calls per CPU-second of the server):")
        lines.append(f"- bare grpc.aio echo: {e['calls_per_s']:.0f}; {e['calls_per_cpu_s']:.0f}")
        for name, label in (("read", "ReadLogs, nothing new"), ("append", "AppendLogs")):
            x = s[name]
            served = x["calls_per_s"] / e["calls_per_s"]
            efficiency = x["calls_per_cpu_s"] / e["calls_per_cpu_s"]
            lines.append(f"- {label}: {x['calls_per_s']:.0f} ({served:.0%}); "
                         f"{x['calls_per_cpu_s']:.0f} ({efficiency:.0%} of echo)")
        lines.append("")
    if "memory" in r:
        m = r["memory"]
        gain = m["proxy_rss_gain"] / 2**20
        in_redis = m["redis_bytes"] / 2**20
        lines.append(f"Proxy holding a {m['entries']:,}-entry journal: +{gain:.0f} MiB RSS for "
                     f"{in_redis:.0f} MiB in Redis ({_f(m['ratio'], '{:.2f}')}x)")
        lines.append("")
    if "snapshot" in r:
        s, mib = r["snapshot"], 2**20
        lines.append(f"One server process takes a {s['size_mib']} MiB snapshot "
                     f"({s['upload_s']:.1f} s), then sends it to {s['readers']} readers at once "
                     f"({s['download_s']:.1f} s): RSS {s['baseline_rss'] / mib:.0f} MiB before, "
                     f"peak {s['upload_peak_rss'] / mib:.0f} MiB during the upload, "
                     f"{s['peak_rss'] / mib:.0f} MiB in all "
                     f"(+{(s['peak_rss'] - s['baseline_rss']) / mib:.0f} MiB)")
        lines.append("")
    if "lua" in r:
        lua = r["lua"]
        lines.append(f"Longest Lua call of each step at the default limits (Redis "
                     f"{lua['redis_version']}, SLOWLOG; the heaviest requests each limit "
                     "allows; median over the repeats, and the worst repeat, which the "
                     "machine's other jobs inflate):")
        lines.append("| step | longest call, median | worst repeat | script |")
        lines.append("|---|---|---|---|")
        for label, runs in lua["steps"].items():
            ranked = sorted(us for us, _ in runs)
            median = ranked[len(ranked) // 2]
            name = max(runs)[1]
            lines.append(f"| {label} | {median / 1000:.2f} ms | {ranked[-1] / 1000:.2f} ms "
                         f"| {name} |")
        lines.append("(0.00 ms: no call of the step took 0.1 ms)")
        lines.append("")
    if "replicas" in r:
        lines += replication.report(r["replicas"])
    if "artifacts" in r:
        lines += _artifacts(r["artifacts"])
    return "\n".join(lines)


def _artifacts(a: dict[str, Any]) -> list[str]:
    mib = 2**20
    lines = ["An artifact through the proxy (GrpcArtifactStore, one server process, directory "
             "store) against copying the file on the same disk:",
             "| file | disk copy | upload (ratio) | download (ratio) | proxy peak RSS "
             "(before) | client peak RSS |", "|---|---|---|---|---|---|"]
    for x in a["runs"]:
        lines.append(f"| {x['size_mib']} MiB | {x['copy_s']:.2f} s | {x['upload_s']:.2f} s "
                     f"({x['upload_ratio']:.1f}x) | {x['download_s']:.2f} s "
                     f"({x['download_ratio']:.1f}x) | {x['proxy_peak_rss'] / mib:.0f} MiB "
                     f"({x['proxy_baseline_rss'] / mib:.0f}) | "
                     f"{x['client_peak_rss'] / mib:.0f} MiB |")
    return lines


def _cpu(c: dict[str, Any]) -> list[str]:
    rows = {w: row for w, row in c.items() if w not in ("round_trip", "processes")}
    names = {"ours": "ours (1 server process)",
             "ours_default": f"ours (default: {c.get('processes', '?')} server processes)"}
    lines = ["CPU per trial by component (W fresh worker processes, N trials in all, "
             "RandomSampler, process start included; ms of CPU per trial):",
             "| W | N | backend | trials/s | vs file | vs redis | workers (start + load + trials "
             "+ exit) | proxy | Redis | Redis commands/trial | requests/trial |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for w, row in rows.items():
        f, rd = row["file"]["trials_per_s"], row["redis"]["trials_per_s"]
        for kind, x in row.items():
            lines.append(
                f"| {w} | {x['trials']} | {names.get(kind, kind)} | {x['trials_per_s']:.0f} | "
                f"{x['trials_per_s'] / f:.2f}x | {x['trials_per_s'] / rd:.2f}x | "
                f"{x['worker_ms']:.2f} ({x['worker_start_ms']:.2f} + {x['worker_load_ms']:.2f} "
                f"+ {x['worker_trials_ms']:.2f} + {x.get('worker_exit_ms', 0):.2f}) | "
                f"{_f(x['proxy_ms'], '{:.2f}')} | "
                f"{_f(x['redis_ms'], '{:.2f}')} | {_f(x['redis_commands'], '{:.2f}')} | "
                f"{_f(x['requests_per_trial'], '{:.2f}')} |")
    for w, row in rows.items():
        o = row["ours"]
        if o["proxy_ms"]:
            per_s = 1000 / o["proxy_ms"]
            lines.append(f"- W={w}: one proxy core sustains {per_s:.0f} trials/s "
                         f"({per_s * o['requests_per_trial']:.0f} requests/s) at this study "
                         f"size ({o['trials']:,} trials; one server process)")
    for name, t in c.get("round_trip", {}).items():
        rest = t["wall_us"] - t["client_us"] - t["proxy_us"] - t["redis_us"]
        lines.append(f"- one {name} alone (W=1): {t['wall_us']:.0f} us: client CPU "
                     f"{t['client_us']:.0f}, proxy CPU {t['proxy_us']:.0f}, Redis CPU "
                     f"{t['redis_us']:.0f}, waiting (network, wake-ups) {rest:.0f}")
    lines.append("")
    return lines
