"""Snapshots in Redis, in chunks: an upload goes chunk by chunk into a LIST of its own and one
script commits it, so neither the proxy nor Redis ever holds a whole snapshot in one piece and a
partial upload is never seen; a download reads one chunk per round trip, with a plain LRANGE
(a committed snapshot's LIST never changes, and is removed whole when a newer one replaces it:
a download that finds pieces missing was overtaken, and is answered ABORTED).

Keys (the journal's hash tag): `snapshot` (position, size, chunks, id of the data, bytes
charged), `snapshot:<id>` (the chunks), `uploads` (id -> bytes charged, size, start time).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from optuna_grpc_storage.protocol.errors import RequestError
from storage_proxy.redis import scripts
from storage_proxy.redis.keys import JournalRef

STALE_UPLOAD_MS = 600_000  # an upload this old was abandoned (its proxy died): removed
MAX_UPLOADS = 4  # uploads of one journal in progress at once
# Stored in pieces of this size: Redis frees a list of up to 64 nodes at once (larger ones in
# the background), so replacing or deleting a snapshot frees at most 16 MiB while it waits.
PIECE_BYTES = 256 << 10
PUSH_BYTES = 512 << 10  # per upload script call: what goes through Lua is copied (Redis 7: slow)

Charged = Callable[[JournalRef, Callable[[], Awaitable[Any]]], Awaitable[Any]]


@dataclass(frozen=True)
class StoredSnapshot:
    position: int
    size: int
    chunks: int
    snapshot_id: str
    whole: bytes | None = None  # a snapshot stored in one piece by an older proxy


class Upload:
    """One snapshot upload in progress; push() chunks, then commit() or abort()."""

    def __init__(self, snapshots: Snapshots, ref: JournalRef, upload_id: str,
                 max_bytes: int) -> None:
        self.snapshots = snapshots
        self.ref = ref
        self.id = upload_id
        self.max_bytes = max_bytes
        self.size = 0
        self.chunks = 0
        self.done = False

    async def push(self, data: bytes) -> None:
        """Store one chunk, in pieces, charged to the journal's quota before it is written."""
        s, ref = self.snapshots, self.ref
        pieces = [data[i : i + PIECE_BYTES] for i in range(0, len(data), PIECE_BYTES)] or [b""]
        await s.charged(ref, lambda: s._chunk(
            keys=[ref.uploads, ref.usage, ref.snapshot_prefix + self.id],
            args=[self.id, self.max_bytes, *pieces]))
        self.size += len(data)
        self.chunks += 1

    async def commit(self, position: int) -> tuple[bool, int]:
        """Make it the journal's snapshot if it is newer: (stored, position held now)."""
        ref = self.ref
        self.done = True
        try:
            stored, held = await self.snapshots._save(
                keys=[ref.snapshot, ref.log, ref.uploads, ref.usage, ref.snapshot_prefix],
                args=[self.id, position])
        except Exception as e:
            raise scripts.refusal(e) or e from None
        return bool(stored), int(held)

    async def abort(self) -> None:
        ref = self.ref
        self.done = True
        await self.snapshots._abort(keys=[ref.uploads, ref.usage, ref.snapshot_prefix],
                                    args=[self.id])


class Snapshots:
    def __init__(self, redis: Any, charged: Charged) -> None:
        self.redis = redis
        self.charged = charged
        self._begin = scripts.register(redis, "snapshot_begin")
        self._chunk = scripts.register(redis, "snapshot_chunk")
        self._save = scripts.register(redis, "save_snapshot")
        self._abort = scripts.register(redis, "snapshot_abort")

    async def begin(self, ref: JournalRef, max_bytes: int) -> Upload:
        upload_id = secrets.token_hex(8)
        try:
            await self._begin(keys=[ref.uploads, ref.usage, ref.snapshot_prefix],
                              args=[upload_id, STALE_UPLOAD_MS, MAX_UPLOADS])
        except Exception as e:
            raise scripts.refusal(e) or e from None
        return Upload(self, ref, upload_id, max_bytes)

    async def stored(self, ref: JournalRef) -> StoredSnapshot | None:
        position, size, chunks, snapshot_id = await self.redis.hmget(
            ref.snapshot, ["position", "size", "chunks", "id"])
        if position is None:
            return None
        if snapshot_id is None:  # stored whole by an older proxy: read whole, once
            whole = await self.redis.hget(ref.snapshot, "data")
            if whole is None:
                return None
            return StoredSnapshot(int(position), len(whole), 1, "", bytes(whole))
        return StoredSnapshot(int(position), int(size), int(chunks), snapshot_id.decode())

    async def pieces(self, ref: JournalRef, snapshot: StoredSnapshot,
                     step: int) -> AsyncIterator[bytes]:
        """The snapshot's data in chunks of about `step` bytes, one round trip each; ABORTED
        if a newer snapshot replaced it meanwhile."""
        if snapshot.whole is not None:
            for offset in range(0, len(snapshot.whole), step):
                yield snapshot.whole[offset : offset + step]
            return
        per = max(1, step // PIECE_BYTES)
        key = ref.snapshot_prefix + snapshot.snapshot_id
        for index in range(0, snapshot.chunks, per):
            found = await self.redis.lrange(key, index, index + per - 1)
            if len(found) < min(per, snapshot.chunks - index):
                raise RequestError(grpc.StatusCode.ABORTED, "the snapshot was replaced by a "
                                   "newer one while it was read; load it again")
            yield b"".join(found)
