"""Measure `optuna-grpc-storage import` and `export` on a large journal file.

    .venv/bin/python scripts/measure_import_export.py [--trials 33333]

Writes a journal file as Optuna's JournalFileBackend would for `--trials` finished trials of one
study (3 entries per trial: 100,000 entries by default), imports it into a throwaway proxy
(one server process), exports it again and prints the time of each phase and whether the
export is byte-identical to the file imported.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import tempfile
import time
from pathlib import Path

from optuna_grpc_storage import GrpcJournalStorage
from optuna_grpc_storage.tools.transfer import (
    append_file,
    check_file,
    export_journal,
    open_journal,
)
from storage_proxy.testing import ProxyProcess


def synthetic_journal(path: Path, n_trials: int) -> int:
    """A journal file as Optuna writes it for `n_trials` finished trials of one study named
    "nfs" (CREATE_TRIAL, SET_TRIAL_PARAM, SET_TRIAL_STATE_VALUES each), without the time it
    takes to run them; returns the number of entries."""
    t0 = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
    dist = json.dumps({"name": "FloatDistribution",
                       "attributes": {"step": None, "low": -10.0, "high": 10.0, "log": False}})
    with open(path, "w") as f:
        def write(entry: dict) -> None:
            f.write(json.dumps(entry, separators=(",", ":")) + "\n")

        write({"op_code": 0, "worker_id": "nfs-0", "study_name": "nfs", "directions": [1]})
        for i in range(n_trials):
            at = (t0 + datetime.timedelta(seconds=i)).isoformat(timespec="microseconds")
            x = (i % 2001) / 100 - 10
            write({"op_code": 4, "worker_id": "nfs-0", "study_id": 0, "datetime_start": at})
            write({"op_code": 5, "worker_id": "nfs-0", "trial_id": i, "param_name": "x",
                   "param_value_internal": x, "distribution": dist})
            write({"op_code": 6, "worker_id": "nfs-0", "trial_id": i, "state": 1,
                   "values": [x * x], "datetime_complete": at})
    return 1 + 3 * n_trials


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=33_333)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="measure-import-") as tmp:
        path, out = Path(tmp) / "journal.log", Path(tmp) / "export.log"
        n = synthetic_journal(path, args.trials)
        size = os.path.getsize(path)
        with ProxyProcess(data_dir=Path(tmp) / "proxy", extra_args=("--workers", "1")) as proxy:
            token = proxy.issue_token("measure")
            backend = open_journal(proxy.endpoint, token, "imported")
            limits = backend.client.limits()
            t = time.perf_counter()
            check_file(path, limits, progress=False)
            check = time.perf_counter() - t
            t = time.perf_counter()
            append_file(backend, path, limits, 0, n, progress=False)
            upload = time.perf_counter() - t
            t = time.perf_counter()
            storage = GrpcJournalStorage(proxy.endpoint, token, "imported")
            replay = time.perf_counter() - t
            t = time.perf_counter()
            storage.take_snapshot()
            snapshot = time.perf_counter() - t
            t = time.perf_counter()
            export_journal(proxy.endpoint, token, "imported", out, progress=False)
            export = time.perf_counter() - t
        print(f"{n} entries, {size / 1e6:.1f} MB")
        print(f"import: check {check:.2f}s, upload {upload:.2f}s ({n / upload:,.0f} entries/s, "
              f"{size / upload / 1e6:.1f} MB/s), snapshot {snapshot:.2f}s (after a replay of "
              f"{replay:.2f}s)")
        print(f"export: {export:.2f}s ({n / export:,.0f} entries/s); identical to the file "
              f"imported: {out.read_bytes() == path.read_bytes()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
