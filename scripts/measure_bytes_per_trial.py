"""Measure what one trial costs Redis: memory, the RDB a backup holds, the AOF on disk.

    .venv/bin/python scripts/measure_bytes_per_trial.py [--trials 2000] [--params 2 10]

For each sampler (RandomSampler, TPESampler) and number of float parameters, a fresh Redis
(AOF on, as deployed) and one proxy; one process runs `--trials` trials of one study through
GrpcJournalStorage with a trivial objective, so every entry Optuna writes is there (and the
snapshot it saves past 10,000 entries). Then, per trial: the journal's bytes as the quota
counts them (entries +16 bytes each, snapshots, heartbeats), Redis' `used_memory` growth over
an empty Redis with the proxy attached, the RDB file a SAVE writes (what a `redis-cli --rdb`
backup fetches) and the AOF (before any rewrite: it stays under the 64 MB that starts one).
deploy/README.md section 6 sizes Redis from these figures.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import optuna
import redis

from optuna_grpc_storage import GrpcJournalStorage
from storage_proxy.process.embedded_redis import RedisProcess
from storage_proxy.testing import ProxyProcess

SAMPLERS = {"RandomSampler": optuna.samplers.RandomSampler,
            "TPESampler": optuna.samplers.TPESampler}


def objective(n_params: int):
    def run(trial: optuna.Trial) -> float:
        return sum(trial.suggest_float(f"x{i}", -10, 10) ** 2 for i in range(n_params))

    return run


def measure(sampler: str, n_params: int, n_trials: int, tmp: Path) -> dict[str, float]:
    server = RedisProcess(tmp / f"redis-{sampler}-{n_params}", appendonly=True)
    server.start()
    try:
        r = redis.Redis(port=server.port)
        with ProxyProcess(server.url, data_dir=tmp / f"proxy-{sampler}-{n_params}",
                          extra_args=("--workers", "1")) as proxy:
            storage = GrpcJournalStorage(proxy.endpoint, token=proxy.issue_token("me"))
            before = r.info("memory")["used_memory"]
            aof_before = r.info("persistence")["aof_current_size"]
            study = optuna.create_study(study_name="s", storage=storage,
                                        sampler=SAMPLERS[sampler](seed=1))
            study.optimize(objective(n_params), n_trials=n_trials)
            (journal,) = storage.grpc_backend.client.list_journals()
            used = r.info("memory")["used_memory"] - before
            aof = r.info("persistence")["aof_current_size"] - aof_before
            r.save()
            rdb = (server.data_dir / "dump.rdb").stat().st_size
            entries = journal.length
            storage.grpc_backend.client.close()
    finally:
        server.stop()
    return {"entries": entries / n_trials, "journal": journal.bytes / n_trials,
            "memory": used / n_trials, "rdb": rdb / n_trials, "aof": aof / n_trials,
            "snapshot": journal.snapshot_bytes}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--params", type=int, nargs="+", default=[2, 10])
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(f"{args.trials} trials, one process, per trial:")
    print(f"{'sampler':14} {'params':>6} {'entries':>8} {'journal B':>10} {'Redis memory B':>15} "
          f"{'RDB B':>8} {'AOF B':>8}  snapshot")
    with tempfile.TemporaryDirectory(prefix="measure-bytes-") as tmp:
        for sampler in SAMPLERS:
            for n_params in args.params:
                m = measure(sampler, n_params, args.trials, Path(tmp))
                print(f"{sampler:14} {n_params:>6} {m['entries']:>8.1f} {m['journal']:>10.0f} "
                      f"{m['memory']:>15.0f} {m['rdb']:>8.0f} {m['aof']:>8.0f}  "
                      f"{m['snapshot'] / 1024:.0f} KiB", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
