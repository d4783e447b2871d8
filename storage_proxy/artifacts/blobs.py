"""Where the artifacts' bytes rest: one small interface, chosen by the operator
(`--artifact-store`): a directory (directory.py; a PersistentVolume in a cluster) or an
S3-compatible bucket (s3.py, through boto3).

The store holds blobs, named (namespace, version): a version is a random name the proxy gives
each upload, so a blob is written once and never changed, and two uploads of one artifact id
never write the same blob. What is visible is decided elsewhere, atomically, in Redis
(index.py): a blob no record points at is invisible, whatever state it is in, and the sweep
(sweep.py) removes it once no upload writes it any more.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol


class BlobWriter(Protocol):
    async def write(self, data: bytes) -> None:
        """Append; what was written stays invisible until finish()."""

    async def finish(self) -> None:
        """Make the blob complete and durable (it may be committed afterwards)."""

    async def abort(self) -> None:
        """Remove whatever was written."""


class BlobReader(Protocol):
    async def read(self, size: int) -> bytes:
        """Up to `size` bytes; b"" at the end."""

    async def close(self) -> None: ...


class BlobStore(Protocol):
    description: str  # for the log: where the bytes go

    async def create(self, namespace: str, version: str) -> BlobWriter: ...

    async def open(self, namespace: str, version: str, offset: int) -> BlobReader:
        """A reader from `offset`; FileNotFoundError if the blob is gone."""

    async def delete(self, namespace: str, version: str) -> None:
        """Remove the blob, finished or not; a missing one is no error."""

    def blobs(self, min_age: float) -> AsyncIterator[tuple[str, list[str]]]:
        """(namespace, versions) of the blobs, finished or not, last written more than
        `min_age` seconds ago: what the sweep looks at."""


class ArtifactStoreError(ValueError):
    """--artifact-store names no store this proxy can use."""


def open_store(spec: str, key_prefix: str) -> BlobStore | None:
    """The store `--artifact-store` names: 'none' (no artifacts), a directory (a path or
    file:///path) or s3://bucket[/prefix] (credentials and endpoint from the environment, as
    boto3 reads them: AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL_S3, ...). Blobs go under the key
    prefix, so proxies with different prefixes can share a store without seeing each other's
    blobs as garbage."""
    spec = spec.strip()
    if spec in ("", "none"):
        return None
    if spec.startswith("s3://"):
        try:
            from storage_proxy.artifacts.s3 import S3Blobs  # boto3 is loaded only then
        except ImportError:
            raise ArtifactStoreError("--artifact-store s3://... needs boto3: pip install "
                                     "'optuna-grpc-storage[server,s3]'") from None

        bucket, _, prefix = spec[len("s3://"):].partition("/")
        if not bucket:
            raise ArtifactStoreError(f"--artifact-store {spec!r}: name the bucket, "
                                     "s3://BUCKET[/PREFIX]")
        prefix = prefix.strip("/")
        return S3Blobs(bucket, f"{prefix}/{key_prefix}/" if prefix else f"{key_prefix}/")
    if "://" in spec and not spec.startswith("file://"):
        raise ArtifactStoreError(f"--artifact-store {spec!r}: use a directory, file:///path, "
                                 "s3://bucket[/prefix] or none")
    from storage_proxy.artifacts.directory import DirectoryBlobs

    return DirectoryBlobs(Path(spec.removeprefix("file://")) / key_prefix)
