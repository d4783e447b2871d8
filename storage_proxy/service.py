"""gRPC handlers: authenticate, validate, call the store, translate failures into status codes.

Every handler takes its namespace from the token (never from the request) and validates the
journal name before building a single Redis key.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from time import perf_counter
from typing import Any, TypeVar

import grpc
import redis.exceptions
from grpc import aio

from optuna_grpc_storage.v1 import journal_pb2 as pb
from optuna_grpc_storage.v1 import journal_pb2_grpc as pb_grpc
from storage_proxy import __version__, metrics
from storage_proxy.auth import Authenticator
from storage_proxy.errors import RequestError, invalid, too_large
from storage_proxy.journals import Journals
from storage_proxy.logs import current_method, current_namespace
from storage_proxy.redis_client import is_out_of_memory
from storage_proxy.store import Append, JournalRef
from storage_proxy.validation import check_entries, check_journal, check_position

log = logging.getLogger("storage_proxy")

# Failures that pass: Redis restarting, a Sentinel or Cluster failover in progress.
_REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
               redis.exceptions.BusyLoadingError, redis.exceptions.ReadOnlyError,
               redis.exceptions.ClusterDownError, redis.exceptions.TryAgainError,
               redis.exceptions.SlotNotCoveredError, redis.exceptions.MasterDownError,
               ConnectionError, TimeoutError)


def _redis_down(e: Exception) -> bool:
    """A failure to reach Redis. Under uvloop, a write to a connection the network has just
    closed raises RuntimeError("unable to perform operation on <TCPTransport closed=True>;
    the handler is closed") rather than an OSError, and redis-py lets it through."""
    return isinstance(e, _REDIS_DOWN) or (
        isinstance(e, RuntimeError) and "the handler is closed" in str(e))


H = TypeVar("H", bound=Callable[..., Awaitable[Any]])
# Redis' Lua holds numbers as doubles and prints them with 14 significant digits: sequences
# up to this value round-trip exactly through the idempotency record.
MAX_SEQUENCE = 10**14 - 1


def status_of(e: Exception, where: str) -> RequestError:
    """The status a failed request answers with: ours as is, a Redis outage as UNAVAILABLE
    (safe to retry), a full Redis as RESOURCE_EXHAUSTED, anything else INTERNAL (and logged;
    call from an except block)."""
    if isinstance(e, RequestError):
        level = logging.DEBUG if e.code == grpc.StatusCode.UNAUTHENTICATED else logging.INFO
        log.log(level, "refused %s: %s", e.code.name, e.message)
        return e
    if _redis_down(e):
        log.warning("redis unavailable: %s", type(e).__name__)
        return RequestError(grpc.StatusCode.UNAVAILABLE,
                            "the storage proxy cannot reach Redis right now; retry shortly")
    if is_out_of_memory(e):
        log.error("redis is out of memory (maxmemory): writes are refused")
        return RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                            "the storage is full (Redis reached its memory limit); nothing was "
                            "written; ask your operator to add memory or delete finished journals")
    log.exception("unexpected error in %s", where)
    return RequestError(grpc.StatusCode.INTERNAL, "internal error in the storage proxy")


def handler(fn: H) -> H:
    """Answer a failed unary or streaming call with the status of its error; count and time
    the call by method and status code; tag log lines with the call's method."""
    method = fn.__name__

    @functools.wraps(fn)
    async def wrapper(self: JournalService, request: Any, context: aio.ServicerContext) -> Any:
        current_method.set(method)
        code = grpc.StatusCode.OK
        start = perf_counter()
        try:
            with metrics.call_in_flight(method):
                return await fn(self, request, context)
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
            error = status_of(e, method)
            code = error.code
            await context.abort(error.code, error.message)
        finally:
            metrics.call_finished(method, code.name, perf_counter() - start)

    return wrapper  # type: ignore[return-value]


class JournalService(pb_grpc.JournalServiceServicer):
    def __init__(self, journals: Journals, auth: Authenticator) -> None:
        self.journals = journals
        self.store = journals.store
        self.auth = auth
        self.limits = journals.limits
        self.draining = False
        self._idle_sessions: set[asyncio.Task[Any]] = set()

    def drain(self) -> None:
        """Stop serving sessions: idle ones end now, busy ones after their current request
        (their clients reconnect, to another replica if there is one)."""
        self.draining = True
        for task in self._idle_sessions:
            task.cancel()

    async def _namespace(self, context: aio.ServicerContext) -> str:
        namespace = await self.auth.namespace(context.invocation_metadata())
        current_namespace.set(namespace)
        return namespace

    async def _journal(self, context: aio.ServicerContext, name: str) -> JournalRef:
        namespace = await self._namespace(context)
        return self.store.ref(namespace, check_journal(name))

    @handler
    async def AppendLogs(self, request: pb.AppendLogsRequest, context: aio.ServicerContext):
        return await self._append(await self._journal(context, request.journal), request)

    @handler
    async def ReadLogs(self, request: pb.ReadLogsRequest, context: aio.ServicerContext) -> None:
        async for chunk in self._read(await self._journal(context, request.journal), request):
            await context.write(chunk)

    async def Session(self, request_iterator: AsyncIterator[pb.SessionRequest],
                      context: aio.ServicerContext) -> None:
        metadata = context.invocation_metadata()
        current_method.set("Session")
        try:
            current_namespace.set(await self.auth.namespace(metadata))
        except Exception as e:
            error = status_of(e, "Session")
            metrics.call_finished("Session", error.code.name, 0.0)
            await context.abort(error.code, error.message)
        task = asyncio.current_task()
        assert task is not None
        self._idle_sessions.add(task)
        try:
            with metrics.call_in_flight("Session"):
                async for request in request_iterator:
                    self._idle_sessions.discard(task)
                    await self._session_request(request, metadata, context)
                    if self.draining:
                        return
                    self._idle_sessions.add(task)
        except asyncio.CancelledError:
            if not self.draining:
                raise
            # drain() woke this idle session: end it normally, so the call completes now
            # instead of when the grace period runs out.
        finally:
            self._idle_sessions.discard(task)

    async def _session_request(self, request: pb.SessionRequest, metadata: Any,
                               context: aio.ServicerContext) -> None:
        """Answer one request of a session; a failure is answered in-band and counted like the
        unary call of the same name."""
        method = "AppendLogs" if request.WhichOneof("call") == "append" else "ReadLogs"
        current_method.set(method)
        code, start = grpc.StatusCode.OK, perf_counter()
        try:
            await self._answer_in_session(request, metadata, context)
        except Exception as e:
            error = status_of(e, method)
            code = error.code
            await context.write(pb.SessionResponse(
                error=pb.Error(code=error.code.value[0], message=error.message), last=True))
        finally:
            metrics.call_finished(method, code.name, perf_counter() - start)

    async def _answer_in_session(self, request: pb.SessionRequest, metadata: Any,
                                 context: aio.ServicerContext) -> None:
        namespace = await self.auth.namespace(metadata)  # checked again: tokens get revoked
        kind = request.WhichOneof("call")
        if kind == "append":
            ref = self.store.ref(namespace, check_journal(request.append.journal))
            response = await self._append(ref, request.append)
            await context.write(pb.SessionResponse(append=response, last=True))
        elif kind == "read":
            ref = self.store.ref(namespace, check_journal(request.read.journal))
            previous = None
            async for chunk in self._read(ref, request.read):
                if previous is not None:
                    await context.write(pb.SessionResponse(chunk=previous))
                previous = chunk
            await context.write(pb.SessionResponse(chunk=previous, last=True))
        else:
            raise invalid("empty session request: set append or read")

    async def _append(self, ref: JournalRef,
                      request: pb.AppendLogsRequest) -> pb.AppendLogsResponse:
        entries = check_entries(request.entries, self.limits)
        known = check_position(request.known_position, "known_position")
        if len(request.client_id) > 128:
            raise invalid("client_id is longer than 128 characters")
        if request.sequence > MAX_SEQUENCE:
            raise invalid(f"sequence {request.sequence} is above {MAX_SEQUENCE}: number appends "
                          "1, 2, 3... (the store keeps sequences exactly up to 14 digits)")
        done = await self.journals.append(
            ref, Append(entries, request.client_id, request.sequence, known))
        if done.duplicate:
            metrics.DUPLICATE_APPENDS.inc()
        else:
            metrics.record_appended(len(entries), sum(map(len, entries)))
        return pb.AppendLogsResponse(
            first_position=done.first,
            unseen=done.unseen or (),
            unseen_complete=done.unseen is not None,
            duplicate=done.duplicate,
        )

    async def _read(self, ref: JournalRef,
                    request: pb.ReadLogsRequest) -> AsyncIterator[pb.LogChunk]:
        start = check_position(request.position)
        count = check_position(request.max_entries, "max_entries")
        stop = start + count if count else -1
        async for position, length, entries in self.journals.read(ref, start, stop):
            yield pb.LogChunk(start=position, entries=entries, journal_length=length)

    @handler
    async def SaveSnapshot(
        self, request_iterator: AsyncIterator[pb.SnapshotChunk], context: aio.ServicerContext
    ) -> pb.SaveSnapshotResponse:
        namespace = await self._namespace(context)
        first: pb.SnapshotChunk | None = None
        parts: list[bytes] = []
        size = 0
        async for chunk in request_iterator:
            first = first or chunk
            size += len(chunk.data)
            if size > self.limits.max_snapshot_bytes:
                raise too_large(
                    f"snapshot exceeds {self.limits.max_snapshot_bytes} bytes "
                    "(--max-snapshot-bytes)"
                )
            parts.append(chunk.data)
        if first is None:
            raise invalid("empty upload: SaveSnapshot needs at least one chunk")
        ref = self.store.ref(namespace, check_journal(first.journal))
        position = check_position(first.position)
        stored, held = await self.store.save_snapshot(ref, position, b"".join(parts))
        if stored:
            metrics.SNAPSHOT_BYTES.labels("saved").inc(size)
        return pb.SaveSnapshotResponse(stored=stored, position=held)

    @handler
    async def LoadSnapshot(
        self, request: pb.LoadSnapshotRequest, context: aio.ServicerContext
    ) -> None:
        ref = await self._journal(context, request.journal)
        found = await self.store.load_snapshot(ref)
        if found is None:
            return
        position, data = found
        step = self.limits.max_chunk_bytes
        for offset in range(0, max(len(data), 1), step):
            head = offset == 0
            await context.write(
                pb.SnapshotChunk(
                    journal=ref.name if head else "",
                    position=position if head else 0,
                    total_size=len(data) if head else 0,
                    data=data[offset : offset + step],
                )
            )
        metrics.SNAPSHOT_BYTES.labels("loaded").inc(len(data))

    @handler
    async def ListJournals(self, request: pb.ListJournalsRequest, context: aio.ServicerContext):
        namespace = await self._namespace(context)
        journals = [
            pb.JournalInfo(name=n, length=ln, snapshot_position=sp, snapshot_bytes=sb)
            for n, ln, sp, sb in await self.store.list_journals(namespace)
        ]
        return pb.ListJournalsResponse(journals=journals)

    @handler
    async def DeleteJournal(self, request: pb.DeleteJournalRequest, context: aio.ServicerContext):
        ref = await self._journal(context, request.journal)
        deleted = await self.store.delete_journal(ref)
        self.journals.cache.drop(ref.channel)
        log.info("journal %r deleted", ref.name, extra={"journal": ref.name})
        return pb.DeleteJournalResponse(deleted=deleted)

    @handler
    async def WhoAmI(self, request: pb.WhoAmIRequest, context: aio.ServicerContext):
        namespace = await self._namespace(context)
        lim = self.limits
        return pb.WhoAmIResponse(
            namespace=namespace,
            server_version=__version__,
            auth_required=self.auth.required,
            limits=pb.Limits(
                max_entry_bytes=lim.max_entry_bytes,
                max_batch_entries=lim.max_batch_entries,
                max_batch_bytes=lim.max_batch_bytes,
                max_chunk_bytes=lim.max_chunk_bytes,
                max_snapshot_bytes=lim.max_snapshot_bytes,
                max_message_bytes=lim.max_message_bytes,
                max_unseen_entries=lim.max_unseen_entries,
            ),
        )

    @handler
    async def RecordHeartbeat(
        self, request: pb.RecordHeartbeatRequest, context: aio.ServicerContext
    ):
        ref = await self._journal(context, request.journal)
        ids = _trial_ids(request.trial_ids)
        now = await self.store.record_heartbeats(ref, ids)
        return pb.RecordHeartbeatResponse(server_time_ms=now)

    @handler
    async def GetHeartbeats(self, request: pb.GetHeartbeatsRequest, context: aio.ServicerContext):
        ref = await self._journal(context, request.journal)
        ids = _trial_ids(request.trial_ids) if request.trial_ids else []
        now, stamps = await self.store.get_heartbeats(ref, ids)
        return pb.GetHeartbeatsResponse(
            server_time_ms=now,
            heartbeats=[pb.Heartbeat(trial_id=t, age_ms=now - s) for t, s in stamps.items()],
        )


def _trial_ids(ids: Any) -> list[int]:
    if not ids:
        raise invalid("trial_ids is empty")
    if len(ids) > 10_000:
        raise too_large("at most 10000 trial_ids per call")
    if min(ids) < 0:
        raise invalid("trial ids must be >= 0")
    return list(ids)
