"""Measure the access pattern the load test plays: gRPC calls per trial and entry sizes, as
Optuna's JournalStorage and GrpcJournalBackend really produce them.

    python loadtests/pattern.py [--workers 4] [--trials 50] [--params 2] [--objective-seconds 0.5]

Starts its own Redis and proxy, runs a RandomSampler study in worker processes with an
objective of `--params` float suggestions and prints what the locustfile's constants are
based on.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import json
import multiprocessing
import tempfile
import time
from pathlib import Path

import optuna

from optuna_grpc_storage import GrpcJournalStorage
from optuna_grpc_storage.protocol.v1 import journal_pb2 as pb
from storage_proxy.process.embedded_redis import RedisProcess
from storage_proxy.testing import ProxyProcess


def work(endpoint: str, token: str, n_trials: int, n_params: int, seconds: float
         ) -> dict[str, int]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = GrpcJournalStorage(endpoint, token=token)
    study = optuna.load_study(study_name="pattern", storage=storage,
                              sampler=optuna.samplers.RandomSampler())
    before = dict(storage.grpc_backend.calls)

    def objective(trial: optuna.Trial) -> float:
        value = sum(trial.suggest_float(f"x{i}", -10, 10) ** 2 for i in range(n_params))
        time.sleep(seconds)  # the training a real trial Pod does
        return value

    study.optimize(objective, n_trials=n_trials)
    return {k: v - before[k] for k, v in storage.grpc_backend.calls.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--trials", type=int, default=50, help="trials per worker")
    parser.add_argument("--params", type=int, default=2)
    parser.add_argument("--objective-seconds", type=float, default=0.5,
                        help="time each objective takes after its suggestions")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        redis = RedisProcess(Path(tmp) / "redis")
        redis.start()
        proxy = ProxyProcess(redis.url, data_dir=Path(tmp) / "proxy")
        try:
            proxy.start()
            token = proxy.issue_token("pattern")
            storage = GrpcJournalStorage(proxy.endpoint, token=token)
            optuna.create_study(study_name="pattern", storage=storage)
            ctx = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(args.workers, mp_context=ctx) as pool:
                jobs = [pool.submit(work, proxy.endpoint, token, args.trials, args.params,
                                    args.objective_seconds) for _ in range(args.workers)]
                counts = [job.result() for job in jobs]
            connection = storage.grpc_backend.connection
            chunks = connection.stub.ReadLogs(pb.ReadLogsRequest(journal="default"),
                                              metadata=connection.metadata)
            raw = [e for c in chunks for e in c.entries]
        finally:
            proxy.stop()
            redis.stop()
    trials = args.workers * args.trials
    sizes: dict[int, list[int]] = collections.defaultdict(list)
    for entry in raw:
        sizes[json.loads(entry)["op_code"]].append(len(entry))
    names = {op.value: op.name for op in optuna.storages.journal._storage.JournalOperation}
    print(f"{args.workers} workers x {args.trials} trials, RandomSampler, {args.params} params, "
          f"objective {args.objective_seconds}s")
    for kind in ("append", "read"):
        total = sum(c[kind] for c in counts)
        print(f"{kind}: {total} calls, {total / trials:.2f} per trial")
    for op, s in sorted(sizes.items()):
        print(f"op {op:2} {names[op]:24} {len(s):6} entries, {len(s) / trials:5.2f} per trial, "
              f"{min(s)}-{max(s)} bytes (mean {sum(s) / len(s):.0f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
