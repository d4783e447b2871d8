"""The journal service's handlers: authenticate, check the request, call the store.

Every handler takes its namespace from the token (never from the request) and checks the
journal name before building a single Redis key: `_grant` resolves the token and checks the
method against its scope, `_ref` checks the journal against it (access.py decides both).
Failures become status codes in calls.py, for unary calls and for each request of a Session
stream alike.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from grpc import aio

from optuna_grpc_storage.protocol.entries import check_entries
from optuna_grpc_storage.protocol.errors import invalid, too_large
from optuna_grpc_storage.protocol.limits import Limits
from optuna_grpc_storage.protocol.names import check_journal
from optuna_grpc_storage.protocol.requests import (
    check_idempotency_key,
    check_position,
    check_trial_ids,
)
from optuna_grpc_storage.protocol.v1 import journal_pb2 as pb
from optuna_grpc_storage.protocol.v1 import journal_pb2_grpc as pb_grpc
from optuna_grpc_storage.protocol.version import __version__
from storage_proxy import metrics, sharing, snapshot_transfer
from storage_proxy.access import Grant
from storage_proxy.auth import Authenticator
from storage_proxy.cache import JournalCache
from storage_proxy.fairness import Fairness
from storage_proxy.group_commit import GroupCommit
from storage_proxy.logs import current_method, current_namespace
from storage_proxy.reads import Reader
from storage_proxy.redis.store import Append, JournalRef, JournalStore
from storage_proxy.rpc.calls import abort, answering, handler
from storage_proxy.rpc.errors import status_of

log = logging.getLogger("storage_proxy")


class JournalService(pb_grpc.JournalServiceServicer):
    def __init__(self, store: JournalStore, cache: JournalCache, auth: Authenticator,
                 limits: Limits, fairness: Fairness | None = None) -> None:
        self.store = store
        self.cache = cache
        self.commits = GroupCommit(store, cache, limits)
        self.reader = Reader(store, cache, limits)
        self.auth = auth
        self.limits = limits
        self.fairness = fairness or Fairness()
        self.draining = False
        self._idle_sessions: set[asyncio.Task[Any]] = set()

    def drain(self) -> None:
        """Stop serving sessions: idle ones end now, busy ones after their current request
        (their clients reconnect, to another replica if there is one)."""
        self.draining = True
        for task in self._idle_sessions:
            task.cancel()

    async def _grant(self, context: aio.ServicerContext) -> Grant:
        """The caller's grant, from its token, checked for the method being answered (calls.py
        named it); the call counts against the user's rate and, until it ends, against their
        calls in progress (fairness.py)."""
        grant = await self.auth.authorize(context.invocation_metadata(), _method())
        current_namespace.set(grant.namespace)
        self.fairness.admit(grant.namespace)
        release = self.fairness.open(grant.namespace, stream=False)
        context.add_done_callback(lambda _: release())
        return grant

    def _ref(self, grant: Grant, name: str) -> JournalRef:
        """The keys of journal `name` of the grant's namespace, if its scope covers it."""
        grant.check(_method(), check_journal(name))
        return self.store.ref(grant.namespace, name)

    async def _journal(self, context: aio.ServicerContext, name: str) -> JournalRef:
        return self._ref(await self._grant(context), name)

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
        try:
            namespace = (await self.auth.authorize(metadata, "Session")).namespace
            current_namespace.set(namespace)
            self.fairness.admit(namespace)
            release = self.fairness.open(namespace, stream=True)
        except Exception as e:  # counted as a Session call only when refused
            error = status_of(e, "Session")
            metrics.call_finished("Session", error.code.name, 0.0)
            await abort(context, error)
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
            release()

    async def _session_request(self, request: pb.SessionRequest, metadata: Any,
                               context: aio.ServicerContext) -> None:
        """Answer one request of a session; a failure is answered in-band and counted like the
        unary call of the same name."""
        kind = request.WhichOneof("call")
        method = "AppendLogs" if kind == "append" else "ReadLogs"
        with answering(method, in_flight=False) as outcome:
            await self._answer_in_session(kind, method, request, metadata, context)
        if outcome.error is not None:
            e = outcome.error
            await context.write(pb.SessionResponse(
                error=pb.Error(code=e.code.value[0], message=e.message,
                               retry_after_ms=e.retry_after_ms), last=True))

    async def _answer_in_session(self, kind: str | None, method: str,
                                 request: pb.SessionRequest, metadata: Any,
                                 context: aio.ServicerContext) -> None:
        # Checked again (tokens get revoked and expire), as the unary call of the same name.
        grant = await self.auth.authorize(metadata, method)
        self.fairness.admit(grant.namespace)
        if kind == "append":
            ref = self._ref(grant, request.append.journal)
            response = await self._append(ref, request.append)
            await context.write(pb.SessionResponse(append=response, last=True))
        elif kind == "read":
            ref = self._ref(grant, request.read.journal)
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
        quota = await self.store.quotas.limits(ref.namespace)
        for i, entry in enumerate(entries):
            if len(entry) > quota.entry_bytes:
                raise too_large(f"entry {i} is {len(entry)} bytes; the quota 'entry_bytes' of "
                                f"user {ref.namespace!r} is {quota.entry_bytes} bytes")
        known = check_position(request.known_position, "known_position")
        check_idempotency_key(request.client_id, request.sequence)
        release = self.fairness.hold(ref.namespace, sum(map(len, entries)))
        try:
            done = await self.commits.append(
                ref, Append(entries, request.client_id, request.sequence, known))
        finally:
            release()
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
        async for position, length, entries in self.reader.read(ref, start, stop):
            yield pb.LogChunk(start=position, entries=entries, journal_length=length)

    @handler
    async def SaveSnapshot(
        self, request_iterator: AsyncIterator[pb.SnapshotChunk], context: aio.ServicerContext
    ) -> pb.SaveSnapshotResponse:
        grant = await self._grant(context)
        quota = await self.store.quotas.limits(grant.namespace)
        stored, held, size = await snapshot_transfer.save(
            lambda name: self._ref(grant, name), self.store, request_iterator,
            self.limits.max_chunk_bytes, min(self.limits.max_snapshot_bytes, quota.snapshot_bytes))
        if stored:
            metrics.SNAPSHOT_BYTES.labels("saved").inc(size)
        return pb.SaveSnapshotResponse(stored=stored, position=held)

    @handler
    async def LoadSnapshot(
        self, request: pb.LoadSnapshotRequest, context: aio.ServicerContext
    ) -> None:
        ref = await self._journal(context, request.journal)
        size = await snapshot_transfer.load(self.store, ref, context.write,
                                            self.limits.max_chunk_bytes)
        metrics.SNAPSHOT_BYTES.labels("loaded").inc(size)

    @handler
    async def ListJournals(self, request: pb.ListJournalsRequest, context: aio.ServicerContext):
        grant = await self._grant(context)
        journals = [  # only those the token may use
            pb.JournalInfo(name=n, length=ln, snapshot_position=sp, snapshot_bytes=sb, bytes=b)
            for n, ln, sp, sb, b in await self.store.list_journals(grant.namespace)
            if grant.scope.may_use(n)
        ]
        return pb.ListJournalsResponse(journals=journals)

    @handler
    async def DeleteJournal(self, request: pb.DeleteJournalRequest, context: aio.ServicerContext):
        ref = await self._journal(context, request.journal)
        deleted = await self.store.delete_journal(ref)
        self.cache.drop(ref.channel)
        log.info("journal %r deleted", ref.name, extra={"journal": ref.name})
        return pb.DeleteJournalResponse(deleted=deleted)

    @handler
    async def WhoAmI(self, request: pb.WhoAmIRequest, context: aio.ServicerContext):
        grant = await self._grant(context)
        return pb.WhoAmIResponse(
            namespace=grant.namespace,
            server_version=__version__,
            auth_required=self.auth.required,
            limits=self.limits.to_proto(),
            quota=(await self.store.quotas.status(grant.namespace)).to_proto(),
            scope=grant.scope.to_proto(pb.TokenScope()),
            user=grant.user,
            token_id=grant.token_id,
        )

    @handler
    async def ShareToken(self, request: pb.ShareTokenRequest, context: aio.ServicerContext):
        grant = await self._grant(context)
        token_id, token, scope = await sharing.share(self.auth.registry, grant, request)
        log.info("token %s shared from %s: %s", token_id, grant.token_id, scope.describe())
        return pb.ShareTokenResponse(token=token, token_id=token_id,
                                     scope=scope.to_proto(pb.TokenScope()))

    @handler
    async def RecordHeartbeat(
        self, request: pb.RecordHeartbeatRequest, context: aio.ServicerContext
    ):
        ref = await self._journal(context, request.journal)
        ids = check_trial_ids(request.trial_ids)
        now = await self.store.record_heartbeats(ref, ids)
        return pb.RecordHeartbeatResponse(server_time_ms=now)

    @handler
    async def GetHeartbeats(self, request: pb.GetHeartbeatsRequest, context: aio.ServicerContext):
        ref = await self._journal(context, request.journal)
        ids = check_trial_ids(request.trial_ids) if request.trial_ids else []
        now, stamps = await self.store.get_heartbeats(ref, ids)
        return pb.GetHeartbeatsResponse(
            server_time_ms=now,
            heartbeats=[pb.Heartbeat(trial_id=t, age_ms=now - s) for t, s in stamps.items()],
        )


def _method() -> str:
    """The method being answered, as calls.py recorded it (each Session request as AppendLogs
    or ReadLogs): the scope is checked against the call that really runs."""
    return current_method.get() or "?"
