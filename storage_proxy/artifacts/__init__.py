"""Artifacts: the files a trial leaves behind, served beside the journals (same port, token,
namespaces and fairness limits).

    blobs.py      the small interface to where the bytes rest, and --artifact-store parsing
    directory.py  blobs as files under a directory (the embedded default; a PersistentVolume)
    s3.py         blobs as objects of an S3-compatible bucket (boto3)
    index.py      what exists and what it holds against the quota: Redis, one script a change
    transfer.py   uploads and downloads, streamed in bounded memory, visible once complete
    service.py    ArtifactService: the gRPC handlers
    sweep.py      removes blobs nothing uses any more (a proxy killed mid-upload)
"""

from __future__ import annotations

from typing import Any

from storage_proxy.artifacts.blobs import open_store
from storage_proxy.artifacts.index import ArtifactIndex
from storage_proxy.artifacts.service import ArtifactService
from storage_proxy.auth import Authenticator
from storage_proxy.config import Settings
from storage_proxy.fairness import Fairness
from storage_proxy.quotas import Quotas


def artifact_service(settings: Settings, redis: Any, quotas: Quotas, auth: Authenticator,
                     fairness: Fairness) -> ArtifactService:
    """The service --artifact-store asks for (one that refuses every call with 'none')."""
    blobs = open_store(settings.artifact_store, settings.key_prefix)
    index = ArtifactIndex(redis, settings.key_prefix, quotas, settings.artifact_lease_seconds)
    return ArtifactService(blobs, index, auth, fairness, settings.limits.max_chunk_bytes,
                           settings.artifact_sweep_seconds)


__all__ = ["ArtifactService", "artifact_service"]
