"""Snapshots through the proxy in memory bounded by the chunk size, not the snapshot's: an
upload is cut into --max-chunk-bytes pieces as it arrives, and each piece is in Redis before
the next message is read (so at most about two chunks are held per upload); a download sends
one stored chunk at a time, and gRPC's flow control holds the next read until it is sent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from optuna_grpc_storage.protocol.errors import invalid, too_large
from optuna_grpc_storage.protocol.requests import check_position
from optuna_grpc_storage.protocol.v1 import journal_pb2 as pb
from storage_proxy.redis.keys import JournalRef
from storage_proxy.redis.snapshots import PUSH_BYTES, Upload
from storage_proxy.redis.store import JournalStore

_aborting: set[asyncio.Future[None]] = set()  # aborts of interrupted uploads, still running


async def save(ref_of: Callable[[str], JournalRef], store: JournalStore,
               chunks: AsyncIterator[pb.SnapshotChunk], step: int,
               max_bytes: int) -> tuple[bool, int, int]:
    """Store an uploaded snapshot: (stored, position held now, its size). The first chunk
    names the journal; `ref_of` checks the name (and the token's scope) and gives its keys.
    An upload that fails or is cancelled is removed, and its bytes go back to the quota."""
    upload: Upload | None = None
    position, size, pending = 0, 0, Pieces(min(step, PUSH_BYTES))
    try:
        async for chunk in chunks:
            if upload is None:
                ref = ref_of(chunk.journal)
                position = check_position(chunk.position)
                upload = await store.snapshots.begin(ref, max_bytes)
            size += len(chunk.data)
            if size > max_bytes:
                raise too_large(f"snapshot exceeds {max_bytes} bytes (the smaller of "
                                "--max-snapshot-bytes and the user's quota 'snapshot_bytes')")
            for piece in pending.add(chunk.data):
                await upload.push(piece)
        if upload is None:
            raise invalid("empty upload: SaveSnapshot needs at least one chunk")
        if pending.size or upload.chunks == 0:
            await upload.push(pending.rest())
        stored, held = await upload.commit(position)
        return stored, held, size
    finally:
        if upload is not None and not upload.done:
            task = asyncio.ensure_future(upload.abort())  # runs even if this call is cancelled
            _aborting.add(task)
            task.add_done_callback(_settled)


class Pieces:
    """Cuts a stream of byte strings into pieces of `step` bytes, copying nothing when the
    strings already have that size (what the client sends)."""

    def __init__(self, step: int) -> None:
        self.step = step
        self.parts: list[bytes] = []
        self.size = 0

    def add(self, data: bytes) -> list[bytes]:
        self.parts.append(data)
        self.size += len(data)
        out = []
        while self.size >= self.step:
            if len(self.parts[0]) == self.step:
                out.append(self.parts.pop(0))
            else:
                joined = b"".join(self.parts)
                out.append(joined[: self.step])
                self.parts = [joined[self.step :]] if len(joined) > self.step else []
            self.size -= self.step
        return out

    def rest(self) -> bytes:
        joined, self.parts, self.size = b"".join(self.parts), [], 0
        return joined


def _settled(task: asyncio.Future[None]) -> None:
    _aborting.discard(task)
    if not task.cancelled():
        task.exception()  # an abort that failed is swept later (snapshot_begin.lua)


async def load(store: JournalStore, ref: JournalRef,
               write: Callable[[pb.SnapshotChunk], Awaitable[Any]], step: int) -> int:
    """Send the journal's snapshot in chunks (none if it has no snapshot); its size."""
    snapshot = await store.snapshots.stored(ref)
    if snapshot is None:
        return 0
    head = True
    async for piece in store.snapshots.pieces(ref, snapshot, step):
        await write(_chunk(ref, snapshot.position, snapshot.size, piece, head))
        head = False
    if head:  # an empty snapshot: one chunk that says so
        await write(_chunk(ref, snapshot.position, 0, b"", True))
    return snapshot.size


def _chunk(ref: JournalRef, position: int, size: int, data: bytes,
           head: bool) -> pb.SnapshotChunk:
    if head:
        return pb.SnapshotChunk(journal=ref.name, position=position, total_size=size, data=data)
    return pb.SnapshotChunk(data=data)
