"""`optuna-grpc-storage status`: a user's studies with counts by state, best and last update,
as a table or JSON, and live with --follow."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys

import optuna

from optuna_grpc_storage.tools.status import Overview, render_table, show

optuna.logging.set_verbosity(optuna.logging.WARNING)


def make_studies(make_storage) -> None:
    storage = make_storage()
    study = optuna.create_study(study_name="cnn", storage=storage)
    values = iter([4.0, 1.5, 9.0])
    study.optimize(lambda t: t.suggest_float("x", 0, 1) * 0 + next(values), n_trials=3)
    study.tell(study.ask(), state=optuna.trial.TrialState.PRUNED)
    study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)
    study.ask()  # running
    study.enqueue_trial({"x": 0.5})  # waiting
    study.enqueue_trial({"x": 0.6})
    multi = optuna.create_study(study_name="mo", storage=make_storage("other"),
                                directions=["maximize", "minimize"])
    for a, b in ((1, 1), (2, 2), (0, 3)):
        multi.enqueue_trial({"a": a, "b": b})
    multi.optimize(lambda t: (t.suggest_int("a", 0, 3), t.suggest_int("b", 0, 3)), n_trials=3)
    optuna.create_study(study_name="empty", storage=storage, direction="maximize")


def test_rows_count_every_state_with_best_and_last_update(make_storage, proxy, token) -> None:
    make_studies(make_storage)
    rows = Overview(proxy.endpoint, token, dashboard_url="http://dash/study/{study_name}").rows()
    by_name = {r["study_name"]: r for r in rows}
    assert [(r["journal"], r["study_name"]) for r in rows] == \
        [("default", "cnn"), ("default", "empty"), ("other", "mo")]
    cnn = by_name["cnn"]
    assert {k: cnn[k] for k in ("count_active", "count_waiting", "count_succeeded",
                                "count_pruned", "count_failed", "count_total")} == \
        {"count_active": 1, "count_waiting": 2, "count_succeeded": 3, "count_pruned": 1,
         "count_failed": 1, "count_total": 8}
    assert (cnn["best_value"], cnn["best_trial"], cnn["directions"]) == (1.5, 1, ["minimize"])
    assert cnn["updated_at"] is not None and cnn["dashboard_url"] == "http://dash/study/cnn"
    assert by_name["mo"]["pareto_front_size"] == 2 and by_name["mo"]["best_value"] is None
    assert by_name["empty"]["count_total"] == 0 and by_name["empty"]["updated_at"] is None
    table = render_table(rows).splitlines()
    assert table[0].split() == ["JOURNAL", "STUDY", "DIRECTION", "RUNNING", "WAITING",
                                "COMPLETE", "PRUNED", "FAIL", "TOTAL", "BEST", "LAST", "UPDATE"]
    assert table[1].split()[:10] == ["default", "cnn", "minimize", "1", "2", "3", "1", "1",
                                     "8", "1.5"]
    assert "2 on the Pareto front" in table[3] and table[2].split()[-2:] == ["-", "-"]
    only = Overview(proxy.endpoint, token, journals=["other"]).rows()
    assert [r["study_name"] for r in only] == ["mo"]


def test_show_prints_json_and_follows_changes(make_storage, proxy, token) -> None:
    make_studies(make_storage)
    out = io.StringIO()
    assert show(Overview(proxy.endpoint, token), as_json=True, out=out) == 0
    assert [r["study_name"] for r in json.loads(out.getvalue())] == ["cnn", "empty", "mo"]
    study = optuna.load_study(study_name="empty", storage=make_storage())
    calls: list[float] = []

    def sleep(seconds: float) -> None:  # between refreshes: a trial finishes, then quiet
        calls.append(seconds)
        if len(calls) == 1:
            study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
        elif len(calls) == 3:
            raise KeyboardInterrupt

    out = io.StringIO()
    assert show(Overview(proxy.endpoint, token), as_json=True, follow=True, out=out,
                sleep=sleep) == 0
    snapshots = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(snapshots) == 2  # printed again only when something changed
    counts = [{r["study_name"]: r["count_succeeded"] for r in s}["empty"] for s in snapshots]
    assert counts == [0, 1]


def test_status_command_follows_live(make_storage, proxy, token) -> None:
    storage = make_storage()
    study = optuna.create_study(study_name="live", storage=storage)
    env = {**os.environ, "OPTUNA_GRPC_STORAGE_ENDPOINT": proxy.endpoint,
           "OPTUNA_GRPC_STORAGE_TOKEN": token}
    once = subprocess.run([sys.executable, "-m", "optuna_grpc_storage.tools.cli", "status"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert once.returncode == 0 and once.stdout.splitlines()[1].split()[:2] == ["default", "live"]
    follow = subprocess.Popen([sys.executable, "-m", "optuna_grpc_storage.tools.cli", "status",
                               "--json", "--follow", "--interval", "0.2"],
                              env=env, stdout=subprocess.PIPE, text=True)
    try:
        first = json.loads(follow.stdout.readline())
        assert first[0]["count_total"] == 0
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
        seen = [first[0]["count_succeeded"]]
        while seen[-1] < 2:  # each change shows up; the test's timeout bounds the wait
            seen.append(json.loads(follow.stdout.readline())[0]["count_succeeded"])
        assert seen[0] == 0 and seen[-1] == 2
    finally:
        follow.send_signal(signal.SIGINT)
        assert follow.wait(30) == 0  # Ctrl-C ends it quietly
    bad = subprocess.run([sys.executable, "-m", "optuna_grpc_storage.tools.cli", "status"],
                         env={**env, "OPTUNA_GRPC_STORAGE_TOKEN": "ogs_nope_nope"},
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "refused" in bad.stderr and "ogs_nope" not in bad.stderr
