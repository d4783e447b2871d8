"""Register gRPC services so that a request which is not valid protobuf gets INVALID_ARGUMENT.

Left to itself, grpc.aio answers bytes its deserializer cannot parse with UNKNOWN ("Unexpected
<class 'google.protobuf.message.DecodeError'>...") on unary requests, INTERNAL on streamed ones,
and logs a traceback for each: a misbehaving client could fill the log and would learn nothing
it can act on. Here every deserializer of a service returns a marker instead of raising, and
the handler refuses the call before the servicer sees it. This is done once, at registration,
for every method, so handlers need no checks of their own and calls pay one isinstance().
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from grpc import aio

log = logging.getLogger("storage_proxy")


class Undecodable:
    """Stands for a request message that could not be parsed."""

    def __init__(self, message_type: str, error: str) -> None:
        self.message = (
            f"the request could not be decoded as {message_type}: {error}; send requests made "
            "by the optuna-grpc-storage client or by stubs generated from its .proto files"
        )


def _lenient(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    message_type = getattr(getattr(deserialize, "__self__", None), "DESCRIPTOR", None)
    name = message_type.full_name if message_type is not None else "request"

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except (DecodeError, ValueError, TypeError) as e:
            # upb says "Error parsing message with type 'X': <why>"; keep the why.
            return Undecodable(name, str(e).rpartition(": ")[2] or type(e).__name__)

    return parse


async def _refuse(context: aio.ServicerContext, bad: Undecodable) -> None:
    log.debug("refused an undecodable request: %s", bad.message)
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, bad.message)


async def _check_one(request: Any, context: aio.ServicerContext) -> Any:
    if isinstance(request, Undecodable):
        await _refuse(context, request)
    return request


async def _check_each(requests: AsyncIterator[Any], context: aio.ServicerContext) -> Any:
    async def checked() -> AsyncIterator[Any]:
        async for request in requests:
            yield await _check_one(request, context)

    return checked()


def _behaviour(inner: Callable[..., Any], check: Callable[..., Any]) -> Callable[..., Any]:
    """`inner` with its request checked first, of the same kind (coroutine or async
    generator function), since grpc.aio decides how to run a behaviour by its kind."""
    if inspect.isasyncgenfunction(inner):

        async def generate(request: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
            async for response in inner(await check(request, context), context):
                yield response

        return generate
    if not inspect.iscoroutinefunction(inner):
        raise TypeError(f"{inner!r}: only async servicer methods are supported")

    async def run(request: Any, context: aio.ServicerContext) -> Any:
        return await inner(await check(request, context), context)

    return run


def _guard(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """The same handler with a deserializer that never raises and a behaviour that refuses
    undecodable requests with INVALID_ARGUMENT."""
    if handler.request_deserializer is None:
        return handler
    streaming = handler.request_streaming
    kind = ("stream_" if streaming else "unary_") + (
        "stream" if handler.response_streaming else "unary")
    behaviour = _behaviour(getattr(handler, kind), _check_each if streaming else _check_one)
    return handler._replace(  # type: ignore[attr-defined]
        request_deserializer=_lenient(handler.request_deserializer), **{kind: behaviour}
    )


class _Collector:
    """Stands in for the server while a generated add_*_to_server registers its handlers."""

    def __init__(self) -> None:
        self.services: dict[str, dict[str, grpc.RpcMethodHandler]] = {}

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass  # rebuilt from the registered method handlers below

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        self.services[service] = handlers


def add_servicer(
    add_to_server: Callable[[Any, Any], None], servicer: Any, server: aio.Server
) -> None:
    """Register `servicer` as `add_to_server` (a generated add_*_to_server) would, with
    undecodable requests refused as INVALID_ARGUMENT."""
    collector = _Collector()
    add_to_server(servicer, collector)
    if not collector.services:
        raise RuntimeError(f"{add_to_server.__name__} registered no method handlers")
    for service, handlers in collector.services.items():
        guarded = {name: _guard(h) for name, h in handlers.items()}
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, guarded),))
        server.add_registered_method_handlers(service, guarded)
