"""Fixtures: a real redis-server on a free port and a real `storage-proxy serve` process.

Tests share one Redis and one proxy per session and isolate themselves by user (each test gets
its own freshly issued token, hence its own namespace).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

from optuna_grpc_storage import GrpcJournalStorage
from optuna_grpc_storage.protocol.v1 import journal_pb2_grpc
from storage_proxy.process.embedded_redis import RedisProcess
from storage_proxy.redis.client import connect
from storage_proxy.testing import ProxyProcess
from storage_proxy.tokens import TokenRegistry


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path_factory.mktemp("redis"), appendonly=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def proxy(redis_server: RedisProcess, tmp_path_factory: pytest.TempPathFactory):
    with ProxyProcess(redis_server.url, data_dir=tmp_path_factory.mktemp("proxy"),
                      extra_args=("--auth-cache-seconds", "0.5")) as p:
        yield p


def issue_token(redis_url: str, user: str, prefix: str = "ogs", **kwargs: Any) -> str:
    """A new token for `user` (kwargs: TokenRegistry.issue's namespace, scope, note)."""

    async def go() -> str:
        client = connect(redis_url)
        try:
            return (await TokenRegistry(client, prefix).issue(user, **kwargs))[1]
        finally:
            await client.aclose()

    return asyncio.run(go())


@pytest.fixture
def new_user(redis_server: RedisProcess) -> Callable[[], tuple[str, str]]:
    """Make a fresh user and token: (user, token)."""

    def make() -> tuple[str, str]:
        user = "u" + uuid.uuid4().hex[:12]
        return user, issue_token(redis_server.url, user)

    return make


@pytest.fixture
def token(new_user: Callable[[], tuple[str, str]]) -> str:
    return new_user()[1]


@pytest.fixture
def make_storage(proxy: ProxyProcess, token: str) -> Callable[..., GrpcJournalStorage]:
    def make(journal: str = "default", **kwargs: object) -> GrpcJournalStorage:
        return GrpcJournalStorage(proxy.endpoint, token=token, journal=journal, **kwargs)

    return make


class RawClient:
    """The generated stubs (journal and artifact services) with a token attached: for tests
    that send exactly the bytes they mean to, bypassing every check the Python client makes."""

    def __init__(self, endpoint: str, token: str | None) -> None:
        self.channel = grpc.insecure_channel(endpoint)
        self.stub = journal_pb2_grpc.JournalServiceStub(self.channel)
        self.artifacts = journal_pb2_grpc.ArtifactServiceStub(self.channel)
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()

    def __getattr__(self, method: str) -> Callable[..., object]:
        call = getattr(self.stub, method, None) or getattr(self.artifacts, method)
        return lambda request, **kw: call(request, metadata=self.metadata, timeout=30, **kw)


@pytest.fixture
def raw(proxy: ProxyProcess, token: str) -> Iterator[RawClient]:
    client = RawClient(proxy.endpoint, token)
    yield client
    client.channel.close()
