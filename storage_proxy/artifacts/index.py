"""The artifacts' index in Redis: what exists (one record per artifact id, pointing at the
blob of its current version), what the namespace's artifacts hold against its quota, and the
leases of uploads in progress. Every change is one Lua script on the namespace's shard
(lua/artifact_*.lua), so visibility and accounting change together, atomically, on every
replica at once.

Failures: an upload whose proxy dies holds its lease until it runs out (--artifact-lease-
seconds), then its bytes come back and its blob is garbage for the sweep. A proxy that dies
between a commit (or a delete) and removing the replaced blob leaves that blob for the sweep
too. Nothing is ever counted that no artifact or live upload holds, for longer than a lease.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from typing import Any

import grpc
import redis.exceptions

from optuna_grpc_storage.protocol.errors import RequestError
from optuna_grpc_storage.protocol.quota import QuotaLimits, format_bytes
from optuna_grpc_storage.protocol.v1 import journal_pb2 as pb
from storage_proxy import metrics
from storage_proxy.quotas import Quotas
from storage_proxy.redis import scripts
from storage_proxy.redis.keys import NamespaceKeys

MAX_UPLOADS = 64  # uploads in progress at once per namespace, over every replica
SCAN_COUNT = 500


@dataclass(frozen=True)
class Record:
    """One stored artifact."""

    artifact_id: str
    version: str  # its blob
    size: int
    sha256: str  # hex
    journal: str = ""
    study: str = ""
    trial_number: int | None = None
    created_ms: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: bytes | str) -> Record:
        return cls(**json.loads(raw))

    def to_proto(self) -> pb.ArtifactInfo:
        info = pb.ArtifactInfo(artifact_id=self.artifact_id, size=self.size,
                               sha256=bytes.fromhex(self.sha256), journal=self.journal,
                               study=self.study, created_ms=self.created_ms,
                               version=self.version)
        if self.trial_number is not None:
            info.trial_number = self.trial_number
        return info


class ArtifactIndex:
    def __init__(self, redis: Any, prefix: str, quotas: Quotas,
                 lease_seconds: float = 120.0) -> None:
        self.redis = redis
        self.prefix = prefix
        self.quotas = quotas
        self.lease_ms = max(1, int(lease_seconds * 1000))
        self._reserve = scripts.register(redis, "artifact_reserve")
        self._commit = scripts.register(redis, "artifact_commit")
        self._delete = scripts.register(redis, "artifact_delete")
        self._orphans = scripts.register(redis, "artifact_orphans")

    def keys(self, namespace: str) -> NamespaceKeys:
        return NamespaceKeys(self.prefix, namespace)

    async def limits(self, namespace: str) -> QuotaLimits:
        return await self.quotas.limits(namespace)

    async def reserve(self, namespace: str, version: str, artifact_id: str, nbytes: int,
                      renewal: bool, more: int = 0) -> int:
        """Hold `nbytes` in all for this upload (up to `more` if there is room), for one more
        lease; the bytes held. Or refuse naming the limit (RESOURCE_EXHAUSTED), or GONE
        (ABORTED) when a renewed lease ran out."""
        limits, k = await self.limits(namespace), self.keys(namespace)
        try:
            return int(await self._reserve(
                keys=[k.artifact_usage, k.artifact_uploads, k.artifacts],
                args=[version, nbytes, self.lease_ms, limits.artifact_bytes, limits.artifacts,
                      MAX_UPLOADS, artifact_id, int(renewal), max(more, nbytes)]))
        except redis.exceptions.ResponseError as e:
            raise _refusal(e, namespace, artifact_id) or scripts.refusal(e) or e from None

    async def release(self, namespace: str, version: str) -> None:
        """An upload that stopped: its bytes come back now, not when the lease runs out."""
        await self.redis.hdel(self.keys(namespace).artifact_uploads, version)

    async def commit(self, namespace: str, record: Record) -> str | None:
        """Make the upload the artifact; the version it replaced, if any."""
        k = self.keys(namespace)
        try:
            old = await self._commit(
                keys=[k.artifact_usage, k.artifact_uploads, k.artifacts, k.artifact_blobs],
                args=[record.version, record.artifact_id, record.size, record.to_json()])
        except redis.exceptions.ResponseError as e:
            raise scripts.refusal(e) or e from None
        return old.decode() if old else None

    async def get(self, namespace: str, artifact_id: str) -> Record | None:
        raw = await self.redis.hget(self.keys(namespace).artifacts, artifact_id)
        return Record.from_json(raw) if raw else None

    async def delete(self, namespace: str, artifact_id: str) -> str | None:
        """Forget the artifact; the version whose blob is to be removed, or None."""
        k = self.keys(namespace)
        old = await self._delete(keys=[k.artifact_usage, k.artifacts, k.artifact_blobs],
                                 args=[artifact_id])
        return old.decode() if old else None

    async def records(self, namespace: str) -> AsyncIterator[list[Record]]:
        """Every artifact of the namespace, a page at a time (HSCAN: never all at once)."""
        cursor, key = 0, self.keys(namespace).artifacts
        while True:
            cursor, page = await self.redis.hscan(key, cursor, count=SCAN_COUNT)
            if page:
                yield [Record.from_json(v) for v in page.values()]
            if not cursor:
                return

    async def orphans(self, namespace: str, versions: list[str]) -> list[str]:
        """Those of `versions` no artifact uses and no live upload writes."""
        k = self.keys(namespace)
        found = await self._orphans(keys=[k.artifact_uploads, k.artifact_blobs], args=versions)
        return [v.decode() for v in found]


def _refusal(e: Exception, namespace: str, artifact_id: str) -> RequestError | None:
    text = str(e)
    fix = f"ask your operator to raise it (storage-proxy quota set --user {namespace}"
    if text.startswith("TOO_MANY_UPLOADS "):
        return RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED, (
            f"user {namespace!r} has {text.split()[1]} artifact uploads in progress, the most "
            "one user may have at once; retry when some have finished"), retry_after=1.0)
    if not text.startswith("QUOTA "):
        return None
    kind, *numbers = text.split()[1:]
    metrics.record_quota_refusal(kind)
    if kind == "artifacts":
        limit, count = map(int, numbers)
        return RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED, (
            f"quota 'artifacts' of user {namespace!r} reached: limit {limit}, in use {count}; "
            f"artifact {artifact_id!r} was not stored. Delete artifacts you no longer need or "
            f"{fix} --artifacts N)"))
    limit, used, asked = map(int, numbers)
    return RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED, (
        f"quota 'artifact_bytes' of user {namespace!r} exceeded: limit {format_bytes(limit)} "
        f"({limit} bytes), in use {format_bytes(used)}, artifact {artifact_id!r} needs "
        f"{format_bytes(asked)}; nothing was stored. Delete artifacts you no longer need or "
        f"{fix} --artifact-bytes SIZE)"))
