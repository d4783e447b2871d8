"""One wrapper for every call the service answers, unary or streamed, and for each request
of a Session stream: it tags log lines with the method, counts and times the call by method
and status code, and turns a failure into the status the caller gets."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
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

    def __init__(self) -> None:
        self.error: RequestError | None = None


@contextmanager
def answering(method: str, *, in_flight: bool = True) -> Iterator[CallOutcome]:
    """Count, time and tag one call (or one Session request) of `method`. An exception other
    than cancellation is caught and left in the outcome as the RequestError to answer with;
    a client that went away ends the call as CANCELLED."""
    current_method.set(method)
    outcome, code, start = CallOutcome(), grpc.StatusCode.OK, perf_counter()
    try:
        if in_flight:
            with metrics.call_in_flight(method):
                yield outcome
        else:
            yield outcome
    except aio.AbortError:
        raise
    except aio.InternalError as e:
        # gRPC could not send: the client went away mid-stream (a Pod killed while it
        # reads). Nothing is left to answer; end the call as cancelled, quietly, as
        # grpc.aio does when it has already noticed the client is gone.
        log.debug("%s: the client went away (%s)", method, type(e).__name__)
        code = grpc.StatusCode.CANCELLED
        raise asyncio.CancelledError from e
    except asyncio.CancelledError:
        code = grpc.StatusCode.CANCELLED  # the client went away or the grace period ended
        raise
    except Exception as e:
        outcome.error = status_of(e, method)
        code = outcome.error.code
    finally:
        metrics.call_finished(method, code.name, perf_counter() - start)


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
