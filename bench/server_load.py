"""Server capacity at high concurrency: a bare grpc.aio echo server as the yardstick, and one
load generator (many concurrent callers) used against it and against the proxy.

    python -m bench.server_load echo --port P
    python -m bench.server_load load --target H:P --call echo|read|append --callers 1000 ...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import grpc
from grpc import aio
from optuna.distributions import FloatDistribution, distribution_to_json

from optuna_grpc_storage.protocol.v1 import journal_pb2 as pb
from optuna_grpc_storage.protocol.v1 import journal_pb2_grpc as pb_grpc

ENTRY = json.dumps({"op_code": 5, "worker_id": "bench-worker-0000", "trial_id": 1,
                    "param_name": "x", "param_value_internal": 0.5,
                    "distribution": distribution_to_json(FloatDistribution(-10, 10))}).encode()


async def serve_echo(port: int) -> None:
    def ident(x: bytes) -> bytes:
        return x

    async def echo(request: bytes, context: Any) -> bytes:
        return request

    handler = grpc.method_handlers_generic_handler("bench.Echo", {
        "Echo": grpc.unary_unary_rpc_method_handler(echo, request_deserializer=ident,
                                                    response_serializer=ident)})
    server = aio.server()
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


async def load(target: str, call: str, callers: int, seconds: float, token: str) -> float:
    """Calls completed per second with `callers` concurrent callers, each one call at a time."""
    md = (("authorization", f"Bearer {token}"),)
    channels = [aio.insecure_channel(target) for _ in range(4)]
    done = 0
    stop = time.perf_counter() + seconds

    async def caller(i: int) -> None:
        nonlocal done
        channel = channels[i % len(channels)]
        stub = pb_grpc.JournalServiceStub(channel)
        echo = channel.unary_unary("/bench.Echo/Echo")
        journal, known, seq = f"load-{i % 50}", 0, 0
        while time.perf_counter() < stop:
            if call == "echo":
                await echo(ENTRY)
            elif call == "read":
                async for _ in stub.ReadLogs(pb.ReadLogsRequest(journal="load-read", position=1),
                                             metadata=md):
                    pass
            else:
                seq += 1
                r = await stub.AppendLogs(pb.AppendLogsRequest(
                    journal=journal, entries=[ENTRY], client_id=f"c{i}", sequence=seq,
                    known_position=known), metadata=md)
                known = r.first_position + 1
            done += 1

    if call == "read":  # a journal with one entry: every read has nothing new
        stub = pb_grpc.JournalServiceStub(channels[0])
        await stub.AppendLogs(pb.AppendLogsRequest(journal="load-read", entries=[ENTRY]),
                              metadata=md)
    begin = time.perf_counter()
    await asyncio.gather(*(caller(i) for i in range(callers)))
    rate = done / (time.perf_counter() - begin)
    for channel in channels:
        await channel.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    echo = sub.add_parser("echo")
    echo.add_argument("--port", type=int, required=True)
    gen = sub.add_parser("load")
    gen.add_argument("--target", required=True)
    gen.add_argument("--call", choices=["echo", "read", "append"], required=True)
    gen.add_argument("--callers", type=int, default=1000)
    gen.add_argument("--seconds", type=float, default=5.0)
    gen.add_argument("--token", default="")
    args = parser.parse_args()
    if args.cmd == "echo":
        asyncio.run(serve_echo(args.port))
    else:
        rate = asyncio.run(load(args.target, args.call, args.callers, args.seconds, args.token))
        print(json.dumps({"calls_per_s": rate}))


if __name__ == "__main__":
    main()
