"""The load test itself works: a short locust run of loadtests/locustfile.py against the
session proxy passes its own integrity check, and a run that cannot work exits non-zero.
(The real runs are `make loadtest` and `make soak`.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

LOCUSTFILE = Path(__file__).resolve().parent.parent / "loadtests" / "locustfile.py"


def locust(endpoint: str, token: str, users: int, seconds: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "OPTUNA_GRPC_STORAGE_TOKEN": token, "LOAD_OBJECTIVE_SECONDS": "0.2",
           "LOAD_PODS_PER_STUDY": "10"}
    return subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", str(users),
         "-r", str(users), "-t", f"{seconds}s", "--host", endpoint],
        capture_output=True, text=True, env=env, timeout=120)


def test_short_load_run_checks_its_journals(proxy, token) -> None:
    run = locust(proxy.endpoint, token, users=20, seconds=6)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "integrity check passed: 2 journals" in run.stderr
    acked = int(run.stderr.split("appends acknowledged ")[1].split(",")[0])
    assert acked > 100  # the Pods really worked
    assert "lost" not in run.stderr.split("integrity check passed")[1].split("\n")[0]


def test_load_run_with_a_wrong_token_fails(proxy) -> None:
    # A long -t: the run ends as soon as the set-up fails, and a short one can expire before
    # the set-up's call is answered on a loaded machine (then the run "passes" with nothing).
    run = locust(proxy.endpoint, "ogs_00000000_wrong", users=2, seconds=60)
    assert run.returncode == 1, run.stderr[-3000:]
    assert "cannot create the studies" in run.stderr and "UNAUTHENTICATED" in run.stderr
