"""Redis URLs of every topology, the pub/sub client, and a Redis that is out of memory."""

from __future__ import annotations

import asyncio
import subprocess

import grpc
import pytest
import redis

from optuna_grpc_storage.protocol.v1 import journal_pb2 as pb
from storage_proxy.process.embedded_redis import RedisProcess
from storage_proxy.redis.client import connect_pubsub
from storage_proxy.redis.store import JournalRef
from storage_proxy.redis.urls import RedisURLError, parse_url
from storage_proxy.testing import ProxyProcess, proxy_command
from tests.conftest import RawClient, issue_token
from tests.ops_helpers import sample, scrape


@pytest.mark.parametrize("url, kind, hosts, service, db, password, sentinel_password", [
    ("redis://:pw@r:6380/2", "standalone", [], "", 0, None, None),
    ("unix:///tmp/redis.sock", "standalone", [], "", 0, None, None),
    ("redis+sentinel://s1,s2:26380,[::1]:26381/mymaster", "sentinel",
     [("s1", 26379), ("s2", 26380), ("::1", 26381)], "mymaster", 0, None, None),
    ("redis+sentinel://:p%40ss@s1:26379/mymaster/3?sentinel_password=sp", "sentinel",
     [("s1", 26379)], "mymaster", 3, "p@ss", "sp"),
    ("redis+cluster://user:pw@c1:7000,c2", "cluster", [("c1", 7000), ("c2", 6379)], "", 0,
     "pw", None),
])
def test_every_topology_url_parses(url, kind, hosts, service, db, password,
                                   sentinel_password) -> None:
    target = parse_url(url)
    assert (target.kind, target.hosts, target.service, target.db) == (kind, hosts, service, db)
    if kind != "standalone":
        assert (target.password, target.sentinel_password) == (password, sentinel_password)
    described = target.describe()
    for secret in ("pw", "p@ss", "p%40ss", "sp"):
        assert secret not in described.replace("mymaster", "")


@pytest.mark.parametrize("url, says", [
    ("http://x", "unsupported Redis URL scheme"),
    ("redis+sentinel://:secret@s1:26379", "expected redis+sentinel://"),
    ("redis+cluster://:secret@c1:7000/1", "a cluster has no database number"),
    ("redis+cluster://:secret@c1:port", "bad port"),
    ("redis+sentinel://s1/m?sentinel_password=secret&colour=red", "unknown option"),
])
def test_bad_urls_are_refused_without_showing_a_password(url: str, says: str) -> None:
    with pytest.raises(RedisURLError) as e:
        parse_url(url)
    assert says in str(e.value) and "secret" not in str(e.value)


def test_serve_refuses_a_bad_url_with_a_message() -> None:
    out = subprocess.run(proxy_command("serve", "--port", "0", "--metrics-port", "-1",
                                       "--redis-url", "redis+sentinel://:secret@s1:26379"),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "error: Redis URL" in out.stderr and "Traceback" not in out.stderr
    assert "secret" not in out.stderr


def test_pubsub_client_hears_appends(proxy, redis_server, new_user) -> None:
    user, token = new_user()

    async def listen() -> str:
        client = connect_pubsub(redis_server.url)
        pubsub = client.pubsub()
        await pubsub.subscribe(JournalRef("ogs", user, "news").channel)
        await pubsub.get_message(timeout=1)
        raw = RawClient(proxy.endpoint, token)
        await asyncio.get_running_loop().run_in_executor(None, lambda: raw.AppendLogs(
            pb.AppendLogsRequest(journal="news",
                                 entries=[b'{"op_code": 10}', b'{"op_code": 10, "i": 1}'])))
        raw.channel.close()
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=10)
        await pubsub.aclose()
        await client.aclose()
        assert message is not None
        return message["data"].decode()

    assert asyncio.run(listen()) == '0\n{"op_code": 10}\n{"op_code": 10, "i": 1}'


def test_a_full_redis_refuses_appends_with_resource_exhausted(tmp_path) -> None:
    server = RedisProcess(tmp_path / "redis", appendonly=False)
    server.start()
    try:
        with ProxyProcess(server.url, data_dir=tmp_path / "proxy") as proxy:
            raw = RawClient(proxy.endpoint, issue_token(server.url, "full"))
            raw.AppendLogs(pb.AppendLogsRequest(journal="j", entries=[b'{"op_code": 10}']))
            with pytest.raises(grpc.RpcError) as refused:  # a refusal, not a Redis failure
                raw.AppendLogs(pb.AppendLogsRequest(journal="j", entries=[b'{"op_code": 10}'],
                                                    known_position=5))
            assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            with redis.Redis(port=server.port) as r:
                r.config_set("maxmemory-policy", "noeviction")
                r.config_set("maxmemory", "1")
            with pytest.raises(grpc.RpcError) as full:
                raw.AppendLogs(pb.AppendLogsRequest(journal="j",
                                                    entries=[b'{"op_code": 10, "i": 1}']))
            assert full.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "memory limit" in full.value.details()
            # Nothing was written, and reads still work.
            chunks = list(raw.ReadLogs(pb.ReadLogsRequest(journal="j")))
            assert [e for c in chunks for e in c.entries] == [b'{"op_code": 10}']
            samples = scrape(proxy.metrics_url)
            assert sample(samples, "storage_proxy_redis_errors_total", command="append",
                          error="OutOfMemoryError") >= 1
            assert sample(samples, "storage_proxy_redis_errors_total", command="append",
                          error="ResponseError") == 0  # the refusal above is not an error
            assert sample(samples, "storage_proxy_calls_total", method="AppendLogs",
                          code="RESOURCE_EXHAUSTED") == 1
            assert "out of memory" in proxy.log_tail()
            raw.channel.close()
    finally:
        server.stop()
