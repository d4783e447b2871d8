"""What an operator watches: gRPC health follows Redis, /metrics moves with calls (and adds up
over several processes), logs are structured and never carry a token, flags read the
environment."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

import grpc
import pytest

from optuna_grpc_storage.protocol.v1 import journal_pb2 as pb
from storage_proxy import metrics
from storage_proxy.process.embedded_redis import RedisProcess
from storage_proxy.testing import ProxyProcess, proxy_command
from tests.conftest import RawClient, issue_token
from tests.ops_helpers import (
    JOURNAL_SERVICE,
    NOT_SERVING,
    SERVING,
    health,
    sample,
    scrape,
    scrape_text,
    wait_for,
)

METHODS = {m.name for service in pb.DESCRIPTOR.services_by_name.values() for m in service.methods}


def test_health_follows_redis_down_and_up(tmp_path) -> None:
    redis = RedisProcess(tmp_path / "redis")  # not started yet: the proxy starts without it
    with ProxyProcess(redis.url, data_dir=tmp_path / "proxy") as proxy:
        for service in ("", JOURNAL_SERVICE):
            wait_for(lambda s=service: health(proxy.endpoint, s) == NOT_SERVING,
                     what="NOT_SERVING before Redis exists")
        assert sample(scrape(proxy.metrics_url), "storage_proxy_redis_up") == 0

        redis.start()
        for service in ("", JOURNAL_SERVICE):
            wait_for(lambda s=service: health(proxy.endpoint, s) == SERVING, what="SERVING")
        # The minimum over the server processes: each notices on its next check.
        wait_for(lambda: sample(scrape(proxy.metrics_url), "storage_proxy_redis_up") == 1,
                 what="redis_up 1 in every server process")

        redis.kill()
        wait_for(lambda: health(proxy.endpoint) == NOT_SERVING, what="NOT_SERVING after a crash")
        # Each check may reach another server process; each notices within its interval.
        wait_for(lambda: health(proxy.endpoint, JOURNAL_SERVICE) == NOT_SERVING,
                 what="JournalService NOT_SERVING")
        assert health(proxy.endpoint, "liveness") == SERVING  # no restart for a Redis outage
        wait_for(lambda: sample(scrape(proxy.metrics_url), "storage_proxy_redis_up") == 0,
                 what="redis_up 0")

        redis.start()
        wait_for(lambda: health(proxy.endpoint) == SERVING, what="SERVING after the restart")
        assert proxy.proc is not None and proxy.proc.poll() is None
        log = proxy.log_tail(100)
        assert "health NOT_SERVING (redis unreachable: " in log
        assert "health SERVING (redis up)" in log
    redis.stop()


def test_health_rides_out_a_slow_moment_of_redis(tmp_path) -> None:
    """Redis stops answering for 3 s (every command paused, as behind a slow script): health
    stays SERVING, since Redis was not unreachable for --redis-unready-seconds (10 s)."""
    redis = RedisProcess(tmp_path / "redis", appendonly=False)
    redis.start()
    try:
        with ProxyProcess(redis.url, data_dir=tmp_path / "proxy",
                          extra_args=("--workers", "1")) as proxy:
            wait_for(lambda: health(proxy.endpoint) == SERVING, what="SERVING")
            import redis as redis_py

            with redis_py.Redis.from_url(redis.url) as r:
                r.execute_command("CLIENT", "PAUSE", "3000", "ALL")
            seen = set()
            deadline = time.monotonic() + 4
            while time.monotonic() < deadline:
                seen.add(health(proxy.endpoint))
                time.sleep(0.1)
            assert seen == {SERVING}
            assert "redis did not answer a ping" in proxy.log_tail(50)
    finally:
        redis.stop()


def test_metrics_move_with_calls_and_carry_no_user_data(proxy, new_user) -> None:
    user, token = new_user()
    raw = RawClient(proxy.endpoint, token)
    journal = "secret-journal-name"
    entries = [json.dumps({"op_code": 10, "trial_id": i}).encode() for i in range(6)]
    nbytes = sum(map(len, entries))
    before = scrape(proxy.metrics_url)

    for i in range(3):
        raw.AppendLogs(pb.AppendLogsRequest(journal=journal, entries=entries[2 * i : 2 * i + 2],
                                            client_id="c", sequence=i + 1))
    dup = raw.AppendLogs(pb.AppendLogsRequest(journal=journal, entries=entries[4:],
                                              client_id="c", sequence=3))
    assert dup.duplicate
    chunks = list(raw.ReadLogs(pb.ReadLogsRequest(journal=journal)))
    assert [e for c in chunks for e in c.entries] == entries
    with pytest.raises(grpc.RpcError) as bad:
        raw.AppendLogs(pb.AppendLogsRequest(journal="../escape", entries=entries[:1]))
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    for wrong in (RawClient(proxy.endpoint, "ogs_nope_nope"), RawClient(proxy.endpoint, None)):
        with pytest.raises(grpc.RpcError) as refused:
            wrong.WhoAmI(pb.WhoAmIRequest())
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED

    after = scrape(proxy.metrics_url)

    def delta(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert delta("storage_proxy_calls_total", method="AppendLogs", code="OK") == 4
    assert delta("storage_proxy_calls_total", method="AppendLogs", code="INVALID_ARGUMENT") == 1
    assert delta("storage_proxy_calls_total", method="ReadLogs", code="OK") == 1
    assert delta("storage_proxy_calls_total", method="WhoAmI", code="UNAUTHENTICATED") == 2
    assert delta("storage_proxy_call_duration_seconds_count", method="AppendLogs") == 5
    assert delta("storage_proxy_call_duration_seconds_sum", method="AppendLogs") > 0
    assert delta("storage_proxy_entries_appended_total") == 6
    assert delta("storage_proxy_bytes_appended_total") == nbytes
    assert delta("storage_proxy_duplicate_appends_total") == 1
    assert delta("storage_proxy_entries_read_total", source="redis") == 6
    assert delta("storage_proxy_bytes_read_total", source="redis") == nbytes
    assert delta("storage_proxy_auth_failures_total", reason="unknown") == 1
    assert delta("storage_proxy_auth_failures_total", reason="missing") == 1
    assert delta("storage_proxy_redis_commands_total", command="append") >= 4
    assert delta("storage_proxy_redis_commands_total", command="read") >= 1
    assert delta("storage_proxy_redis_command_duration_seconds_count", command="append") >= 4
    assert sample(after, "storage_proxy_inflight_calls", method="AppendLogs") == 0
    assert sample(after, "storage_proxy_active_streams", method="ReadLogs") == 0
    assert sample(after, "storage_proxy_redis_up") == 1

    # Bounded labels only: no user, token or journal name, and every method/code is a known one.
    text = scrape_text(proxy.metrics_url)
    for secret in (token, user, journal, token.split("_")[1]):
        assert secret not in text
    for (_, labels), _ in after.items():
        values = dict(labels)
        assert values.get("method", "ReadLogs") in METHODS
        assert values.get("code", "OK") in grpc.StatusCode.__members__
    raw.channel.close()


def test_metrics_add_up_over_processes(redis_server, tmp_path, monkeypatch) -> None:
    """The --workers layout: processes share PROMETHEUS_MULTIPROC_DIR, one serves /metrics."""
    stale = tmp_path / "metrics" / "counter_1.db"
    stale.parent.mkdir()
    stale.write_bytes(b"left over from a previous run")
    monkeypatch.setenv(metrics.MULTIPROC_ENV, "")  # restored after the test
    directory = metrics.prepare_multiprocess_dir(tmp_path / "metrics")  # what a supervisor does
    assert os.environ[metrics.MULTIPROC_ENV] == directory and not stale.exists()
    env = {metrics.MULTIPROC_ENV: directory}
    one = ("--workers", "1")  # two single-process proxies, as an operator might run them
    serving = ProxyProcess(redis_server.url, data_dir=tmp_path / "a", env=env, extra_args=one)
    silent = ProxyProcess(redis_server.url, data_dir=tmp_path / "b", env=env, metrics_port=-1,
                          extra_args=one)
    with serving, silent:
        assert silent.metrics_port is None and "metrics on" not in silent.log_tail()
        assert "all processes of" in serving.log_tail()
        token = issue_token(redis_server.url, "multiproc")
        for proxy, calls in ((serving, 3), (silent, 5)):
            raw = RawClient(proxy.endpoint, token)
            for _ in range(calls):
                raw.WhoAmI(pb.WhoAmIRequest())
            raw.channel.close()
        samples = scrape(serving.metrics_url)
        assert sample(samples, "storage_proxy_calls_total", method="WhoAmI", code="OK") == 8
        assert sample(samples, "storage_proxy_call_duration_seconds_count", method="WhoAmI") == 8
        wait_for(lambda: sample(scrape(serving.metrics_url), "storage_proxy_redis_up") == 1,
                 what="redis_up 1 (livemin over both processes)")
        pid = silent.proc.pid
        silent.stop()
        live = tmp_path / "metrics" / f"gauge_livesum_{pid}.db"
        assert live.exists()
        metrics.mark_process_dead(pid)  # a supervisor does this when a worker exits
        assert not live.exists()
        samples = scrape(serving.metrics_url)  # counters of the stopped process still count
        assert sample(samples, "storage_proxy_calls_total", method="WhoAmI", code="OK") == 8


def test_json_logs_have_namespace_and_method_and_never_a_token(redis_server, tmp_path) -> None:
    with ProxyProcess(redis_server.url, data_dir=tmp_path,
                      extra_args=("--log-format", "json", "--log-level", "debug")) as proxy:
        user = "logcheck"
        token = issue_token(redis_server.url, user)
        raw = RawClient(proxy.endpoint, token)
        raw.AppendLogs(pb.AppendLogsRequest(journal="j", entries=[b'{"op_code": 10}']))
        raw.DeleteJournal(pb.DeleteJournalRequest(journal="j"))
        with pytest.raises(grpc.RpcError):
            raw.ReadLogs(pb.ReadLogsRequest(journal="j", position=5)).next()
        wrong = "ogs_deadbeef_" + "x" * 43
        with pytest.raises(grpc.RpcError):
            RawClient(proxy.endpoint, wrong).WhoAmI(pb.WhoAmIRequest())
        raw.channel.close()
    text = proxy.log_path.read_text()
    lines = [json.loads(line) for line in text.splitlines()]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= set(x) for x in lines)
    deleted = [x for x in lines if "deleted" in x["message"]]
    assert deleted and deleted[0]["namespace"] == user
    assert deleted[0]["method"] == "DeleteJournal" and deleted[0]["journal"] == "j"
    refused = [x for x in lines if x["message"].startswith("refused OUT_OF_RANGE")]
    assert refused and refused[0]["method"] == "ReadLogs" and refused[0]["namespace"] == user
    assert any(x["message"].startswith("refused UNAUTHENTICATED") for x in lines)
    assert {"listening", "stopped"} <= {w for x in lines for w in x["message"].split()}
    for secret in (token, wrong, token.split("_")[2], wrong.split("_")[2]):
        assert secret not in text


def test_new_flags_read_the_environment_and_show_it_in_help(tmp_path) -> None:
    env = {**os.environ, "STORAGE_PROXY_METRICS_PORT": "9999",
           "STORAGE_PROXY_LOG_FORMAT": "json", "STORAGE_PROXY_DRAIN_SECONDS": "7.5"}
    out = subprocess.run(proxy_command("serve", "--help"), capture_output=True, text=True,
                         env=env, timeout=60).stdout
    flat = " ".join(out.split())
    for flag, shown in (("METRICS_PORT", "9999"), ("LOG_FORMAT", "json"),
                        ("DRAIN_SECONDS", "7.5")):
        assert re.search(rf"STORAGE_PROXY_{flag}; default: {re.escape(shown)}\]", flat), flag
    assert "redis+sentinel://" in flat and "redis+cluster://" in flat

    # The environment alone configures a real server (ProxyProcess passes only --metrics-port).
    with ProxyProcess(data_dir=tmp_path, env={"STORAGE_PROXY_LOG_FORMAT": "json"}) as proxy:
        first = proxy.log_path.read_text().splitlines()[0]
        assert json.loads(first)["message"].startswith("embedded Redis")
