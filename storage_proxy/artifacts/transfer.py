"""Artifact uploads and downloads in memory bounded by the chunk size, not the artifact's:
each uploaded chunk reaches the blob store before the next message is read (gRPC's flow
control holds the client meanwhile), each chunk of a download is sent before the next is read.

An upload is visible only after its commit (index.py), which follows the last byte being
durable and the client's SHA-256 matching the bytes received. Whatever stops it before (a
refusal, the client gone, the proxy stopping) removes its blob and gives its bytes back;
a proxy killed outright leaves both to the lease and the sweep.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from optuna_grpc_storage.protocol.errors import RequestError, invalid, too_large
from optuna_grpc_storage.protocol.names import check_artifact_id, check_journal
from optuna_grpc_storage.protocol.quota import QuotaLimits, format_bytes
from optuna_grpc_storage.protocol.v1 import journal_pb2 as pb
from storage_proxy import metrics
from storage_proxy.artifacts.blobs import BlobStore, BlobWriter
from storage_proxy.artifacts.index import ArtifactIndex, Record
from storage_proxy.fairness import Fairness

RESERVE_STEP = 16 << 20  # an upload of unannounced size holds its quota this much at a time
MAX_STUDY_CHARS = 1024
_pending: set[asyncio.Future[None]] = set()  # clean-ups of interrupted uploads, still running


def check_labels(info: pb.ArtifactInfo) -> None:
    if info.journal:
        check_journal(info.journal)
    if len(info.study) > MAX_STUDY_CHARS or "\x00" in info.study:
        raise invalid(f"the study label must be at most {MAX_STUDY_CHARS} characters, no NUL")
    if info.HasField("trial_number") and info.trial_number < 0:
        raise invalid(f"trial_number must be >= 0, got {info.trial_number}")


class Upload:
    """One upload, from its first chunk to its commit."""

    def __init__(self, index: ArtifactIndex, blobs: BlobStore, namespace: str,
                 limits: QuotaLimits, fairness: Fairness) -> None:
        self.index, self.blobs, self.namespace = index, blobs, namespace
        self.limits, self.fairness = limits, fairness
        self.version = secrets.token_hex(16)
        self.writer: BlobWriter | None = None
        self.reserved = 0
        self.holding = False  # a lease is held (maybe of 0 bytes: an empty artifact)
        self.renewed = 0.0
        self.done = False

    async def begin(self, info: pb.ArtifactInfo) -> None:
        self.artifact_id = check_artifact_id(info.artifact_id)
        check_labels(info)
        self.info, self.announced = info, info.size
        if self.announced < 0:
            raise invalid(f"size must be >= 0 (0: not known), got {self.announced}")
        self._check_size(self.announced)
        step = min(RESERVE_STEP, self.limits.artifact_size)
        await self._hold(self.announced, False, more=self.announced or step)
        self.writer = await self.blobs.create(self.namespace, self.version)

    def _check_size(self, size: int) -> None:
        limit = self.limits.artifact_size
        if size > limit:
            raise too_large(f"artifact {self.artifact_id!r} is over {format_bytes(limit)} "
                            f"({limit} bytes), the quota 'artifact_size' of user "
                            f"{self.namespace!r}; nothing was stored")
        if self.announced and size > self.announced:
            raise invalid(f"artifact {self.artifact_id!r}: more bytes than the {self.announced} "
                          "announced in its first chunk; nothing was stored")

    async def _hold(self, nbytes: int, renewal: bool, more: int = 0) -> None:
        self.reserved = await self.index.reserve(self.namespace, self.version,
                                                 self.artifact_id, nbytes, renewal, more)
        self.renewed = time.monotonic()
        self.holding = True

    async def add(self, data: bytes, received: int) -> None:
        """Store one chunk; `received` counts it already."""
        self._check_size(received)
        lease = self.index.lease_ms / 1000
        if received > self.reserved:
            step = min(self.reserved + RESERVE_STEP, self.limits.artifact_size)
            await self._hold(received, True, more=step)
        elif time.monotonic() - self.renewed > lease / 3:
            await self._hold(self.reserved, True)
        release = self.fairness.hold(self.namespace, len(data))
        try:
            assert self.writer is not None
            await self.writer.write(data)
        finally:
            release()

    async def commit(self, size: int, sha256: bytes) -> Record:
        assert self.writer is not None
        info = self.info
        await self.writer.finish()
        record = Record(self.artifact_id, self.version, size, sha256.hex(), info.journal,
                        info.study, info.trial_number if info.HasField("trial_number") else None,
                        int(time.time() * 1000))
        old = await self.index.commit(self.namespace, record)
        self.done = True
        if old is not None:  # the replaced version; left to the sweep if this fails
            _in_background(self.blobs.delete(self.namespace, old))
        return record

    def abandon(self) -> None:
        """Remove what was written and give the bytes back, even if this call is being
        cancelled (a background task)."""
        if self.done or not self.holding:
            return

        async def clean() -> None:
            try:
                if self.writer is not None:
                    await self.writer.abort()
            finally:
                await self.index.release(self.namespace, self.version)

        _in_background(clean())


def _in_background(work: Awaitable[None]) -> None:
    task = asyncio.ensure_future(work)
    _pending.add(task)
    task.add_done_callback(_settled)


def _settled(task: asyncio.Future[None]) -> None:
    _pending.discard(task)
    if not task.cancelled():
        task.exception()  # a clean-up that failed: the lease runs out, the sweep removes it


async def receive(index: ArtifactIndex, blobs: BlobStore, namespace: str,
                  chunks: AsyncIterator[pb.ArtifactChunk], fairness: Fairness,
                  may_use: Callable[[str], None] | None = None) -> Record:
    """Store an uploaded artifact; its record once committed. `may_use` refuses a journal
    label beyond the token's scope: the new one's, and the one of the artifact it replaces."""
    upload = Upload(index, blobs, namespace, await index.limits(namespace), fairness)
    digest, size, claimed = hashlib.sha256(), 0, b""
    try:
        async for chunk in chunks:
            if upload.writer is None:
                if not chunk.HasField("info"):
                    raise invalid("the first chunk of an upload carries info (artifact_id)")
                if may_use is not None:
                    await _may_replace(index, namespace, chunk.info, may_use)
                await upload.begin(chunk.info)
            elif chunk.HasField("info"):
                raise invalid("only the first chunk of an upload carries info")
            if claimed and chunk.data:
                raise invalid("data after the chunk carrying sha256 (it must be the last)")
            size += len(chunk.data)
            if chunk.data:
                digest.update(chunk.data)
                await upload.add(chunk.data, size)
            claimed = chunk.sha256 or claimed
        if upload.writer is None:
            raise invalid("empty upload: UploadArtifact needs at least one chunk")
        if not claimed:
            raise invalid(f"the upload of {upload.artifact_id!r} ended without the SHA-256 of "
                          "its content (sent on its last chunk): it may have been cut off; "
                          "nothing was stored")
        if upload.announced and size != upload.announced:
            raise invalid(f"artifact {upload.artifact_id!r}: {size} bytes received, "
                          f"{upload.announced} announced; nothing was stored")
        if claimed != digest.digest():
            raise RequestError(grpc.StatusCode.DATA_LOSS, (
                f"artifact {upload.artifact_id!r}: the SHA-256 of the {size} bytes received "
                "is not the one sent; nothing was stored (upload it again)"))
        record = await upload.commit(size, claimed)
    finally:
        upload.abandon()
    metrics.ARTIFACT_BYTES.labels("uploaded").inc(size)
    return record


async def _may_replace(index: ArtifactIndex, namespace: str, info: pb.ArtifactInfo,
                       may_use: Callable[[str], None]) -> None:
    """A scoped token uploads only under its journals, and replaces only their artifacts."""
    may_use(info.journal)
    replaced = await index.get(namespace, check_artifact_id(info.artifact_id))
    if replaced is not None:
        may_use(replaced.journal)


async def send(index: ArtifactIndex, blobs: BlobStore, namespace: str,
               request: pb.DownloadArtifactRequest,
               write: Callable[[pb.ArtifactChunk], Awaitable[Any]], step: int,
               may_use: Callable[[str], None] | None = None) -> int:
    """Send the artifact from request.offset, a chunk at a time; the bytes sent. `may_use`
    refuses an artifact whose journal label is beyond the token's scope."""
    artifact_id = check_artifact_id(request.artifact_id)
    for _ in range(3):  # replaced between the lookup and the open: look again
        record = await index.get(namespace, artifact_id)
        if record is None:
            break
        if may_use is not None:
            may_use(record.journal)
        if request.version and request.version != record.version:
            raise RequestError(grpc.StatusCode.FAILED_PRECONDITION, (
                f"artifact {artifact_id!r} was replaced since the download began; download "
                "it again from the start"))
        if not 0 <= request.offset <= record.size:
            raise RequestError(grpc.StatusCode.OUT_OF_RANGE, (
                f"offset {request.offset} is outside artifact {artifact_id!r} "
                f"({record.size} bytes)"))
        try:
            reader = await blobs.open(namespace, record.version, request.offset)
        except FileNotFoundError:
            continue
        try:
            return await _stream(reader, record, request.offset, write, step)
        finally:
            await reader.close()
    raise RequestError(grpc.StatusCode.NOT_FOUND, f"no artifact {artifact_id!r}")


async def _stream(reader: Any, record: Record, offset: int,
                  write: Callable[[pb.ArtifactChunk], Awaitable[Any]], step: int) -> int:
    sent, left = 0, record.size - offset
    await write(pb.ArtifactChunk(info=record.to_proto()))
    while left > 0:
        data = await reader.read(min(step, left))
        if not data:
            raise RuntimeError(f"blob of artifact {record.artifact_id!r} is shorter than "
                               "recorded")
        await write(pb.ArtifactChunk(data=data))
        sent, left = sent + len(data), left - len(data)
    metrics.ARTIFACT_BYTES.labels("downloaded").inc(sent)
    return sent
