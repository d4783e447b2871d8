"""One wrapper for every call the service answers, unary or streamed, and for each request
of a Session stream: it tags log lines with the method, counts and times the call by method
and status code, and turns a failure into the status the caller gets."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Any, TypeVar

import grpc
from grpc import aio

from optuna_grpc_storage.protocol.errors import RETRY_AFTER_KEY, RequestError
from storage_proxy import metrics
from storage_proxy.logs import current_method
from storage_proxy.rpc.errors import status_of

log = logging.getLogger("storage_proxy")

H = TypeVar("H", bound=Callable[..., Awaitable[Any]])


class CallOutcome:
    """Filled in by `answering`: the failure to answer with, if any."""

    __slots__ = ("error",)

    def __init__(self) -> None:
        self.error: RequestError | None = None


class answering:  # used as a function: `with answering(method) as outcome`
    """Count, time and tag one call (or one Session request) of `method`. An exception other
    than cancellation is caught and left in the outcome as the RequestError to answer with;
    a client that went away ends the call as CANCELLED. (A class rather than a generator:
    it runs for every request.)"""

    __slots__ = ("in_flight", "method", "outcome", "start")

    def __init__(self, method: str, *, in_flight: bool = True) -> None:
        self.method = method
        self.in_flight = metrics.call_in_flight(method) if in_flight else None
        self.outcome = CallOutcome()

    def __enter__(self) -> CallOutcome:
        current_method.set(self.method)
        if self.in_flight is not None:
            self.in_flight.__enter__()
        self.start = perf_counter()
        return self.outcome

    def __exit__(self, kind: type[BaseException] | None, e: BaseException | None,
                 tb: Any) -> bool:
        code, method = grpc.StatusCode.OK, self.method
        try:
            if self.in_flight is not None:
                self.in_flight.__exit__(kind, e, tb)
            if e is None:
                return False
            if isinstance(e, aio.AbortError):
                return False
            if isinstance(e, aio.InternalError):
                # gRPC could not send: the client went away mid-stream (a Pod killed while
                # it reads). Nothing is left to answer; end the call as cancelled, quietly,
                # as grpc.aio does when it has already noticed the client is gone.
                log.debug("%s: the client went away (%s)", method, type(e).__name__)
                code = grpc.StatusCode.CANCELLED
                raise asyncio.CancelledError from e
            if isinstance(e, asyncio.CancelledError):
                code = grpc.StatusCode.CANCELLED  # the client went away, or the grace ended
                return False
            if not isinstance(e, Exception):
                return False
            self.outcome.error = status_of(e, method)
            code = self.outcome.error.code
            return True
        finally:
            metrics.call_finished(method, code.name, perf_counter() - self.start)


def handler(fn: H) -> H:
    """A servicer method answered through `answering`: a failure aborts the call with its
    status."""
    method = fn.__name__

    @functools.wraps(fn)
    async def wrapper(self: Any, request: Any, context: aio.ServicerContext) -> Any:
        with answering(method) as outcome:
            return await fn(self, request, context)
        assert outcome.error is not None
        await abort(context, outcome.error)

    return wrapper  # type: ignore[return-value]


async def abort(context: aio.ServicerContext, error: RequestError) -> None:
    """End the call with the error's status; a retry hint goes in the trailing metadata."""
    if error.retry_after is not None:
        context.set_trailing_metadata(((RETRY_AFTER_KEY, str(error.retry_after_ms)),))
    await context.abort(error.code, error.message)
