"""The artifact service's handlers, beside the journal service on the same port: the same
token, the same namespace rule (the namespace comes from the token only, and an id names an
artifact of the caller's namespace only: another user's is NOT_FOUND, like a missing one),
the same scopes (access.py: a read-only token downloads and lists; a journal-scoped token
uses only artifacts labelled with a journal it may use), the same per-user fairness limits,
the same wrapper turning failures into status codes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from grpc import aio

from optuna_grpc_storage.protocol.errors import RequestError
from optuna_grpc_storage.protocol.names import check_artifact_id
from optuna_grpc_storage.protocol.v1 import journal_pb2 as pb
from optuna_grpc_storage.protocol.v1 import journal_pb2_grpc as pb_grpc
from storage_proxy.access import Grant
from storage_proxy.artifacts import sweep, transfer
from storage_proxy.artifacts.blobs import BlobStore
from storage_proxy.artifacts.index import ArtifactIndex, Record
from storage_proxy.auth import Authenticator
from storage_proxy.fairness import Fairness
from storage_proxy.logs import current_method, current_namespace
from storage_proxy.rpc.calls import handler

log = logging.getLogger("storage_proxy")
PAGE = 500  # artifacts per ListArtifacts message


class ArtifactService(pb_grpc.ArtifactServiceServicer):
    """`blobs` None: this proxy stores no artifacts (every call says so)."""

    def __init__(self, blobs: BlobStore | None, index: ArtifactIndex, auth: Authenticator,
                 fairness: Fairness, chunk_bytes: int, sweep_seconds: float = 600.0) -> None:
        self.blobs = blobs
        self.index = index
        self.auth = auth
        self.fairness = fairness
        self.chunk_bytes = chunk_bytes
        self.sweep_seconds = sweep_seconds

    async def sweep_forever(self) -> None:
        if self.blobs is not None and self.sweep_seconds > 0:
            min_age = min(sweep.MIN_AGE, self.index.lease_ms / 1000)
            await sweep.sweep_forever(self.blobs, self.index, self.sweep_seconds, min_age)

    async def _grant(self, context: aio.ServicerContext) -> tuple[Grant, BlobStore]:
        """As JournalService._grant: the token's grant, the method checked against its scope
        (access.py); the call counts against the user's rate and calls in progress."""
        grant = await self.auth.authorize(context.invocation_metadata(), _method())
        namespace = grant.namespace
        current_namespace.set(namespace)
        self.fairness.admit(namespace)
        release = self.fairness.open(namespace, stream=False)
        context.add_done_callback(lambda _: release())
        if self.blobs is None:
            raise RequestError(grpc.StatusCode.FAILED_PRECONDITION, (
                "this storage proxy keeps no artifacts: its operator starts it with "
                "--artifact-store DIRECTORY or s3://BUCKET (deploy/README.md, Artifacts)"))
        return grant, self.blobs

    @handler
    async def UploadArtifact(self, request_iterator: AsyncIterator[pb.ArtifactChunk],
                             context: aio.ServicerContext) -> pb.ArtifactInfo:
        grant, blobs = await self._grant(context)
        record = await transfer.receive(self.index, blobs, grant.namespace, request_iterator,
                                        self.fairness, _labels_check(grant))
        log.debug("artifact %r stored (%d bytes)", record.artifact_id, record.size)
        return record.to_proto()

    @handler
    async def DownloadArtifact(self, request: pb.DownloadArtifactRequest,
                               context: aio.ServicerContext) -> None:
        grant, blobs = await self._grant(context)
        await transfer.send(self.index, blobs, grant.namespace, request, context.write,
                            self.chunk_bytes, _labels_check(grant))

    @handler
    async def DeleteArtifact(self, request: pb.DeleteArtifactRequest,
                             context: aio.ServicerContext) -> pb.DeleteArtifactResponse:
        grant, blobs = await self._grant(context)
        namespace, artifact_id = grant.namespace, check_artifact_id(request.artifact_id)
        if grant.scope.journal is not None:  # only its journals' artifacts
            record = await self.index.get(namespace, artifact_id)
            if record is not None:
                grant.check(_method(), record.journal)
        version = await self.index.delete(namespace, artifact_id)
        if version is not None:
            try:
                await blobs.delete(namespace, version)
            except Exception as e:  # forgotten already: the sweep removes the blob later
                log.warning("artifact %r deleted; removing its blob failed (%s), the sweep "
                            "will", request.artifact_id, type(e).__name__)
        return pb.DeleteArtifactResponse(deleted=version is not None)

    @handler
    async def ListArtifacts(self, request: pb.ListArtifactsRequest,
                            context: aio.ServicerContext) -> None:
        grant, _ = await self._grant(context)
        trial = request.trial_number if request.HasField("trial_number") else None
        page: list[pb.ArtifactInfo] = []
        async for records in self.index.records(grant.namespace):
            for r in records:
                if _matches(r, request.journal, request.study, trial) and \
                        grant.scope.may_use(r.journal):
                    page.append(r.to_proto())
            while len(page) >= PAGE:
                await context.write(pb.ListArtifactsResponse(artifacts=page[:PAGE]))
                page = page[PAGE:]
        if page:
            await context.write(pb.ListArtifactsResponse(artifacts=page))


def _method() -> str:
    return current_method.get() or "?"


def _labels_check(grant: Grant) -> Callable[[str], None] | None:
    """PERMISSION_DENIED for an artifact whose journal label the grant may not use (a
    journal-scoped token: unlabelled artifacts too); None when every label is allowed."""
    if grant.scope.journal is None:
        return None
    method = _method()
    return lambda journal: grant.check(method, journal)


def _matches(r: Record, journal: str, study: str, trial: Any) -> bool:
    return ((not journal or r.journal == journal) and (not study or r.study == study)
            and (trial is None or r.trial_number == trial))
