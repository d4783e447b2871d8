"""Measure how long a SIGKILLed worker's trial takes to be failed and retried.

    .venv/bin/python scripts/measure_worker_kill.py [--heartbeat-interval 10] [--grace-period 60]

A throwaway proxy, a Controller with the given heartbeat settings, 6 trials on 2 local workers;
trial 1 hangs until this script SIGKILLs its worker. Prints the seconds from the kill to the
trial's FAIL and to its retry's COMPLETE (expected: between grace - interval and grace, plus
the surviving worker's poll of at most 1 s and a trial).
"""

from __future__ import annotations

import argparse
import os
import signal
import tempfile
import time
from pathlib import Path

import optuna

from optuna_grpc_storage import Controller, LocalLauncher
from storage_proxy.testing import ProxyProcess

CELL = '''
import os, time
def make(marker):
    def objective(trial):
        x = trial.suggest_float("x", 0, 1)
        if trial.number == 1:
            open(marker, "w").write(str(os.getpid()))
            time.sleep(3600)
        return x
    return objective
'''


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heartbeat-interval", type=float, default=10.0)
    parser.add_argument("--grace-period", type=float, default=60.0)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="measure-kill-") as tmp:
        proxy = ProxyProcess(data_dir=tmp)
        endpoint = proxy.start()
        try:
            controller = Controller(proxy.issue_token("measure"), endpoint=endpoint,
                                    launcher=LocalLauncher(Path(tmp) / "workers"),
                                    heartbeat_interval=args.heartbeat_interval,
                                    grace_period=args.grace_period)
            study = controller.create_study("killed")
            namespace: dict = {"__name__": "__main__"}
            exec(CELL, namespace)
            marker = Path(tmp) / "pid"
            name = study.optimize(namespace["make"](str(marker)), n_trials=6, parallelism=2,
                                  wait_option="WAIT_NO")  # the kill below is what is timed
            while not marker.exists() or not marker.read_text():
                time.sleep(0.01)
            os.kill(int(marker.read_text()), signal.SIGKILL)
            killed_at = time.time()
            status = study.wait(poll_interval=0.1, progress_bar=False)
            trials = study.get_study().trials
            retry = next(t for t in trials if t.system_attrs.get("retry_history") == [1])
            print(f"heartbeat every {args.heartbeat_interval}s, grace {args.grace_period}s: "
                  f"SIGKILL -> trial 1 FAIL after "
                  f"{trials[1].datetime_complete.timestamp() - killed_at:.2f}s, retry (trial "
                  f"{retry.number}) COMPLETE after "
                  f"{retry.datetime_complete.timestamp() - killed_at:.2f}s; "
                  f"count_total={status['count_total']} "
                  f"count_succeeded={status['count_succeeded']}")
            for process in study.launch_of(name).processes:
                process.wait()
        finally:
            proxy.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
