"""Artifacts through the proxy (issue 15), measured: a file uploaded with GrpcArtifactStore and
downloaded back, against copying the same file on the same disk, in the same run; and the peak
RSS of the proxy's server process (sampled every 5 ms) and of the client process (its
ru_maxrss) while they do it, at two file sizes, to show memory does not grow with the file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.harness import PeakRSS
from storage_proxy.process.embedded_redis import RedisProcess
from storage_proxy.testing import ProxyProcess

BLOCK = 8 << 20

# The client, in a process of its own so that its peak RSS is its own.
CLIENT = r"""
import json, resource, shutil, sys, time
from optuna_grpc_storage import GrpcArtifactStore
endpoint, token, source, target = sys.argv[1:5]
store = GrpcArtifactStore(endpoint, token, timeout=600)
started = time.perf_counter()
with open(source, "rb") as f:
    store.write("bench-artifact", f)
upload = time.perf_counter() - started
started = time.perf_counter()
with store.open_reader("bench-artifact") as reader, open(target, "wb") as out:
    shutil.copyfileobj(reader, out, 1 << 20)
download = time.perf_counter() - started
print(json.dumps({"upload_s": upload, "download_s": download,
                  "client_peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def _write_random(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        left = size
        while left:
            f.write(os.urandom(min(BLOCK, left)))
            left -= min(BLOCK, left)


def _same(a: Path, b: Path) -> bool:
    with open(a, "rb") as x, open(b, "rb") as y:
        while True:
            p, q = x.read(BLOCK), y.read(BLOCK)
            if p != q:
                return False
            if not p:
                return True


def _one(proxy: ProxyProcess, token: str, tmp: Path, size_mib: int) -> dict[str, Any]:
    source, copy, back = (tmp / f"artifact-{size_mib}{s}.bin" for s in ("", "-copy", "-back"))
    _write_random(source, size_mib << 20)
    started = time.perf_counter()
    shutil.copyfile(source, copy)
    os.sync()
    copy_s = time.perf_counter() - started
    assert proxy.proc is not None
    with PeakRSS(proxy.proc.pid) as rss:
        out = subprocess.run([sys.executable, "-c", CLIENT, proxy.endpoint, token, str(source),
                              str(back)], check=True, capture_output=True, text=True)
    result = json.loads(out.stdout.splitlines()[-1])
    assert _same(source, back), "the downloaded file differs"
    for path in (source, copy, back):
        path.unlink()
    return {**result, "size_mib": size_mib, "copy_s": copy_s, "proxy_baseline_rss": rss.baseline,
            "proxy_peak_rss": rss.peak, "upload_ratio": result["upload_s"] / copy_s,
            "download_ratio": result["download_s"] / copy_s}


def artifact_transfer(tmp: Path, size_mib: int = 200) -> dict[str, Any]:
    """Upload and download of a `size_mib` file (and of a tenth of it, to compare memory)."""
    server = RedisProcess(tmp / "artifacts-redis", appendonly=False)
    server.start()
    proxy = ProxyProcess(server.url, data_dir=tmp / "artifacts-proxy", metrics_port=-1,
                         artifact_store=str(tmp / "artifacts-store"),
                         extra_args=("--workers", "1"))
    proxy.start()
    try:
        token = proxy.issue_token("bench")
        runs = [_one(proxy, token, tmp, max(1, size_mib // 10)), _one(proxy, token, tmp,
                                                                      size_mib)]
        for r in runs:
            print(f"  artifact {r['size_mib']} MiB: copy {r['copy_s']:.2f}s, upload "
                  f"{r['upload_s']:.2f}s ({r['upload_ratio']:.1f}x), download "
                  f"{r['download_s']:.2f}s ({r['download_ratio']:.1f}x); proxy peak RSS "
                  f"{r['proxy_peak_rss'] >> 20} MiB, client {r['client_peak_rss'] >> 20} MiB",
                  flush=True)
        return {"runs": runs}
    finally:
        proxy.stop()
        server.stop()
