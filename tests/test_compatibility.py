"""Proxies and clients of different versions (deploy/README.md section 12): optuna_grpc_storage.v1
only gains fields and RPCs, so a newer client works with a proxy that lacks an RPC it prefers,
and a proxy answers requests that lack the fields newer clients send."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import optuna
import pytest

from optuna_grpc_storage import GrpcJournalStorage
from optuna_grpc_storage.protocol.v1 import journal_pb2 as pb
from optuna_grpc_storage.protocol.v1 import journal_pb2_grpc as pb_grpc
from tests import workers

SERVICE = "optuna_grpc_storage.v1.JournalService"


class OlderProxy(grpc.GenericRpcHandler):
    """A real proxy behind a front that does not know the RPCs in `missing`, as a proxy from
    before they were added: gRPC itself answers UNIMPLEMENTED for them. Bytes pass unparsed."""

    def __init__(self, upstream: str, missing: set[str]) -> None:
        self.channel = grpc.insecure_channel(upstream)
        self.missing = missing
        self.seen: list[str] = []

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = details.method
        name = method.rsplit("/", 1)[-1]
        self.seen.append(name)
        if not method.startswith(f"/{SERVICE}/") or name in self.missing:
            return None
        shape = pb.DESCRIPTOR.services_by_name["JournalService"].methods_by_name[name]
        kind = ("stream" if shape.client_streaming else "unary",
                "stream" if shape.server_streaming else "unary")
        upstream = getattr(self.channel, f"{kind[0]}_{kind[1]}")(method)

        def forward(request: Any, context: grpc.ServicerContext) -> Any:
            try:
                return upstream(request, metadata=context.invocation_metadata(),
                                timeout=context.time_remaining())
            except grpc.RpcError as e:
                context.abort(e.code(), e.details())

        def forward_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            try:
                yield from upstream(request, metadata=context.invocation_metadata(),
                                    timeout=context.time_remaining())
            except grpc.RpcError as e:
                context.abort(e.code(), e.details())

        handler = forward_stream if kind[1] == "stream" else forward
        return getattr(grpc, f"{kind[0]}_{kind[1]}_rpc_method_handler")(handler)


@pytest.fixture
def older_proxy(proxy) -> Iterator[tuple[str, OlderProxy]]:
    front = OlderProxy(proxy.endpoint, missing={"Session"})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), handlers=[front])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", front
    finally:
        server.stop(None)
        front.channel.close()


def test_a_newer_client_runs_a_study_on_a_proxy_without_the_session_stream(older_proxy,
                                                                          token) -> None:
    endpoint, front = older_proxy
    storage = GrpcJournalStorage(endpoint, token=token)
    study = optuna.create_study(storage=storage)
    study.optimize(workers.quadratic, n_trials=5)
    client = storage.grpc_backend.client
    assert client.stream is not None and client.stream.unsupported  # it asked, then fell back
    assert front.seen.count("Session") == 1 and "AppendLogs" in front.seen
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 5
    client.close()


def test_a_proxy_answers_an_append_without_the_fields_newer_clients_add(proxy, token) -> None:
    """Only the fields of the first AppendLogsRequest (journal, entries): no idempotency key, no
    known position. The proxy appends and reads back as for any client."""
    entry = json.dumps({"op_code": 0, "worker_id": "old", "study_name": "s",
                        "directions": [1]}).encode()
    metadata = (("authorization", f"Bearer {token}"),)
    with grpc.insecure_channel(proxy.endpoint) as channel:
        stub = pb_grpc.JournalServiceStub(channel)
        answer = stub.AppendLogs(pb.AppendLogsRequest(journal="old-client", entries=[entry]),
                                 metadata=metadata, timeout=10)
        assert answer.first_position == 0 and not answer.duplicate
        (chunk,) = stub.ReadLogs(pb.ReadLogsRequest(journal="old-client"), metadata=metadata,
                                 timeout=10)
    assert list(chunk.entries) == [entry]
