"""gRPC handlers: authenticate, validate, call the store, translate failures into status codes.

Every handler takes its namespace from the token (never from the request) and validates the
journal name before building a single Redis key.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
import redis.exceptions
from grpc import aio

from optuna_grpc_storage.v1 import journal_pb2 as pb
from optuna_grpc_storage.v1 import journal_pb2_grpc as pb_grpc
from storage_proxy import __version__
from storage_proxy.auth import Authenticator
from storage_proxy.errors import RequestError, invalid, too_large
from storage_proxy.store import JournalRef, JournalStore
from storage_proxy.validation import Limits, check_entries, check_journal, check_position

log = logging.getLogger("storage_proxy")

_REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
               redis.exceptions.BusyLoadingError, ConnectionError, TimeoutError)



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


def handler(fn: H) -> H:
    """Turn RequestError and Redis outages into gRPC statuses; log anything unexpected."""

    @functools.wraps(fn)
    async def wrapper(self: JournalService, request: Any, context: aio.ServicerContext) -> Any:
        try:
            return await fn(self, request, context)
        except RequestError as e:
            await context.abort(e.code, e.message)
        except aio.AbortError:
            raise
        except aio.InternalError as e:
            # gRPC could not send: the client went away mid-stream (a Pod killed while it
            # reads). Nothing is left to answer; end the call as cancelled, quietly, as
            # grpc.aio does when it has already noticed the client is gone.
            log.debug("%s: the client went away (%s)", fn.__name__, type(e).__name__)
            raise asyncio.CancelledError from e
        except Exception as e:
            if not _redis_down(e):
                log.exception("unexpected error in %s", fn.__name__)
                await context.abort(grpc.StatusCode.INTERNAL,
                                    "internal error in the storage proxy")
            log.warning("redis unavailable during %s: %s", fn.__name__, type(e).__name__)
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                "the storage proxy cannot reach Redis right now; retry shortly",
            )

    return wrapper  # type: ignore[return-value]


class JournalService(pb_grpc.JournalServiceServicer):
    def __init__(self, store: JournalStore, auth: Authenticator, limits: Limits) -> None:
        self.store = store
        self.auth = auth
        self.limits = limits

    async def _journal(self, context: aio.ServicerContext, name: str) -> JournalRef:
        namespace = await self.auth.namespace(context.invocation_metadata())
        return self.store.ref(namespace, check_journal(name))

    @handler
    async def AppendLogs(self, request: pb.AppendLogsRequest, context: aio.ServicerContext):
        ref = await self._journal(context, request.journal)
        entries = check_entries(request.entries, self.limits)
        known = check_position(request.known_position, "known_position")
        if len(request.client_id) > 128:
            raise invalid("client_id is longer than 128 characters")
        if request.sequence > MAX_SEQUENCE:
            raise invalid(f"sequence {request.sequence} is above {MAX_SEQUENCE}: number appends "
                          "1, 2, 3... (the store keeps sequences exactly up to 14 digits)")
        done = await self.store.append(
            ref, entries, request.client_id, request.sequence, known,
            self.limits.max_unseen_entries, self.limits.max_chunk_bytes,
        )
        return pb.AppendLogsResponse(
            first_position=done.first,
            unseen=done.unseen or (),
            unseen_complete=done.unseen is not None,
            duplicate=done.duplicate,
        )

    @handler
    async def ReadLogs(self, request: pb.ReadLogsRequest, context: aio.ServicerContext) -> None:
        ref = await self._journal(context, request.journal)
        start = check_position(request.position)
        count = check_position(request.max_entries, "max_entries")
        stop = start + count if count else -1
        async for position, length, entries in self.store.read(
            ref, start, stop, self.limits.max_chunk_bytes
        ):
            await context.write(
                pb.LogChunk(start=position, entries=entries, journal_length=length)
            )

    @handler
    async def SaveSnapshot(
        self, request_iterator: AsyncIterator[pb.SnapshotChunk], context: aio.ServicerContext
    ) -> pb.SaveSnapshotResponse:
        namespace = await self.auth.namespace(context.invocation_metadata())
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

    @handler
    async def ListJournals(self, request: pb.ListJournalsRequest, context: aio.ServicerContext):
        namespace = await self.auth.namespace(context.invocation_metadata())
        journals = [
            pb.JournalInfo(name=n, length=ln, snapshot_position=sp, snapshot_bytes=sb)
            for n, ln, sp, sb in await self.store.list_journals(namespace)
        ]
        return pb.ListJournalsResponse(journals=journals)

    @handler
    async def DeleteJournal(self, request: pb.DeleteJournalRequest, context: aio.ServicerContext):
        ref = await self._journal(context, request.journal)
        deleted = await self.store.delete_journal(ref)
        log.info("journal deleted namespace=%s journal=%s", ref.namespace, ref.name)
        return pb.DeleteJournalResponse(deleted=deleted)

    @handler
    async def WhoAmI(self, request: pb.WhoAmIRequest, context: aio.ServicerContext):
        namespace = await self.auth.namespace(context.invocation_metadata())
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
