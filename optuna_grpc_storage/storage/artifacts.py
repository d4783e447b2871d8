"""GrpcArtifactStore: Optuna's ArtifactStore protocol (open_reader, write, remove) on the
proxy, with the same endpoint and token as the journal, so every worker and the notebook
reach the same artifacts and no one else's:

    store = GrpcArtifactStore()   # OPTUNA_GRPC_STORAGE_ENDPOINT / _TOKEN
    artifact_id = optuna.artifacts.upload_artifact(artifact_store=store, study_or_trial=trial,
                                                   file_path="model.pt")
    optuna.artifacts.download_artifact(artifact_store=store, artifact_id=artifact_id,
                                       file_path="copy.pt")

Both directions stream in chunks of CHUNK_BYTES, so memory stays flat whatever the file's
size. An upload sends the SHA-256 of what it read and the proxy stores nothing unless it
matches; a download checks size and SHA-256 at the end, and one cut off resumes where it
stopped (on the same version of the artifact).
"""

from __future__ import annotations

import contextvars
import dataclasses
import hashlib
import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import grpc
from optuna.artifacts.exceptions import ArtifactNotFound

from optuna_grpc_storage.protocol.errors import RequestError
from optuna_grpc_storage.protocol.names import check_artifact_id
from optuna_grpc_storage.protocol.v1 import journal_pb2 as pb
from optuna_grpc_storage.storage.connection import Connection
from optuna_grpc_storage.storage.errors import RequestRejectedError
from optuna_grpc_storage.storage.tls import PEM

CHUNK_BYTES = 1 << 20
MIN_RATE = 4 << 20  # bytes/s an upload's deadline allows for, on top of the call timeout


@dataclass(frozen=True)
class Labels:
    """Where an artifact belongs, recorded with it on the proxy (ListArtifacts filters on it)."""

    journal: str = ""
    study: str = ""
    trial_number: int | None = None


# Set by the trial worker around each trial, so a plain optuna.artifacts.upload_artifact()
# in an objective labels what it uploads with the trial.
current_labels: contextvars.ContextVar[Labels | None] = contextvars.ContextVar(
    "ogs_artifact_labels", default=None)


def labels_of(study_or_trial: Any) -> Labels:
    """The labels of a Trial, FrozenTrial (its number only) or Study on a GrpcJournalStorage."""
    study = getattr(study_or_trial, "study", study_or_trial)
    storage = getattr(study, "_storage", None)
    journal = getattr(getattr(storage, "grpc_backend", None), "journal", "")
    number = getattr(study_or_trial, "number", None)
    return Labels(journal, getattr(study, "study_name", "") or "",
                  number if isinstance(number, int) else None)


class GrpcArtifactStore:
    """Optuna's ArtifactStore on the storage proxy. `labels` are recorded with every upload
    (default: those the trial worker sets for the trial it runs, else none). TLS settings as
    for GrpcJournalBackend."""

    def __init__(self, endpoint: str | None = None, token: str | None = None, *,
                 timeout: float = 30.0, retry_deadline: float = 60.0,
                 labels: Labels | None = None, connection: Connection | None = None,
                 tls_ca: PEM | None = None, tls_cert: PEM | None = None,
                 tls_key: PEM | None = None) -> None:
        self.connection = connection or Connection(endpoint, token, timeout=timeout,
                                                   retry_deadline=retry_deadline, tls_ca=tls_ca,
                                                   tls_cert=tls_cert, tls_key=tls_key)
        self.labels = labels

    def __repr__(self) -> str:
        return f"GrpcArtifactStore({self.connection.target!r})"

    def labelled(self, **labels: Any) -> GrpcArtifactStore:
        """The same store (same connection), recording these labels with uploads."""
        return GrpcArtifactStore(connection=self.connection,
                                 labels=dataclasses.replace(self.labels or Labels(), **labels))

    # -- Optuna's ArtifactStore protocol -------------------------------------------------

    def open_reader(self, artifact_id: str) -> BinaryIO:
        """The artifact as a binary file object, read as it arrives; ArtifactNotFound if
        there is none with this id (in this token's namespace)."""
        return io.BufferedReader(_Download(self.connection, _checked(artifact_id)),
                                 buffer_size=CHUNK_BYTES)

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        """Store the content (from its current position) under artifact_id, replacing any
        artifact of that id; retried from the start after a transient failure."""
        artifact_id = _checked(artifact_id)
        if _seekable(content_body):
            self._upload(artifact_id, content_body)
            return
        with tempfile.TemporaryFile() as spool:  # a stream: spooled to disk, so it can retry
            shutil.copyfileobj(content_body, spool, CHUNK_BYTES)
            spool.seek(0)
            self._upload(artifact_id, spool)  # type: ignore[arg-type]

    def remove(self, artifact_id: str) -> None:
        """Delete the artifact; ArtifactNotFound if there was none."""
        c, artifact_id = self.connection, _checked(artifact_id)
        answer = c.call(f"deleting artifact {artifact_id!r}", lambda _: c.artifact_stub
                        .DeleteArtifact(pb.DeleteArtifactRequest(artifact_id=artifact_id),
                                        timeout=c.timeout, metadata=c.metadata))
        if not answer.deleted:
            raise ArtifactNotFound(f"no artifact {artifact_id!r}")

    # -- beyond the protocol -------------------------------------------------------------

    def list(self, journal: str = "", study: str = "",
             trial_number: int | None = None) -> list[pb.ArtifactInfo]:
        """The namespace's artifacts with these labels (each unset one matches any)."""
        c = self.connection
        request = pb.ListArtifactsRequest(journal=journal, study=study)
        if trial_number is not None:
            request.trial_number = trial_number

        def attempt(_: Any) -> list[pb.ArtifactInfo]:
            pages = c.artifact_stub.ListArtifacts(request, timeout=c.timeout, metadata=c.metadata)
            return [info for page in pages for info in page.artifacts]

        return sorted(c.call("listing artifacts", attempt), key=lambda i: i.artifact_id)

    def close(self) -> None:
        self.connection.close()

    def _upload(self, artifact_id: str, body: BinaryIO) -> pb.ArtifactInfo:
        start = body.tell()
        size = body.seek(0, os.SEEK_END) - start
        labels = self.labels or current_labels.get() or Labels()
        info = pb.ArtifactInfo(artifact_id=artifact_id, size=size, journal=labels.journal,
                               study=labels.study)
        if labels.trial_number is not None:
            info.trial_number = labels.trial_number
        c = self.connection
        deadline = c.timeout + size / MIN_RATE

        def attempt(_: Any) -> pb.ArtifactInfo:
            body.seek(start)
            return c.artifact_stub.UploadArtifact(_chunks(info, body), timeout=deadline,
                                                  metadata=c.metadata)

        return c.call(f"uploading artifact {artifact_id!r} ({size} bytes)", attempt)


def _checked(artifact_id: str) -> str:
    try:
        return check_artifact_id(artifact_id)
    except RequestError as e:
        raise RequestRejectedError(e.message) from None


def _seekable(body: Any) -> bool:
    try:
        return bool(body.seekable()) and body.tell() >= 0
    except (AttributeError, OSError, ValueError):
        return False


def _chunks(info: pb.ArtifactInfo, body: BinaryIO) -> Iterator[pb.ArtifactChunk]:
    """The upload: info with the first piece, then pieces, then the SHA-256 of them all."""
    digest = hashlib.sha256()
    data = body.read(CHUNK_BYTES)
    digest.update(data)
    yield pb.ArtifactChunk(info=info, data=data)
    while data:
        data = body.read(CHUNK_BYTES)
        if data:
            digest.update(data)
            yield pb.ArtifactChunk(data=data)
    yield pb.ArtifactChunk(sha256=digest.digest())


class _NotFound(Exception):
    """NOT_FOUND from the proxy (not retried, becomes Optuna's ArtifactNotFound)."""


class _Download(io.RawIOBase):
    """The chunks of one artifact as a raw binary stream; the first is fetched at once, so a
    missing artifact raises ArtifactNotFound from open_reader(), as Optuna expects."""

    def __init__(self, connection: Connection, artifact_id: str) -> None:
        super().__init__()
        self.connection, self.artifact_id = connection, artifact_id
        self.offset, self.version, self.size = 0, "", -1
        self.expected = b""
        self.digest = hashlib.sha256()
        self.stream: Any = None
        self.pending = memoryview(b"")
        self.finished = False
        self._next()  # the info

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self.pending and not self.finished:
            self._next()
        n = min(len(buffer), len(self.pending))
        buffer[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n

    def _next(self) -> None:
        c = self.connection

        def attempt(_: Any) -> pb.ArtifactChunk | None:
            if self.stream is None:
                request = pb.DownloadArtifactRequest(artifact_id=self.artifact_id,
                                                     offset=self.offset, version=self.version)
                self.stream = c.artifact_stub.DownloadArtifact(
                    request, timeout=10 * c.timeout + self.size / MIN_RATE, metadata=c.metadata)
            try:
                return next(self.stream)
            except StopIteration:
                return None
            except grpc.RpcError as e:
                self.stream = None  # resumed from self.offset on the next attempt
                if e.code() == grpc.StatusCode.NOT_FOUND:
                    raise _NotFound(e.details()) from None
                raise

        try:
            chunk = c.call(f"downloading artifact {self.artifact_id!r}", attempt)
        except _NotFound as e:
            raise ArtifactNotFound(str(e)) from None
        if chunk is None:
            self._end()
        elif chunk.HasField("info"):
            self.version, self.size = chunk.info.version, chunk.info.size
            self.expected = chunk.info.sha256
        if chunk is not None and chunk.data:
            self.digest.update(chunk.data)
            self.offset += len(chunk.data)
            self.pending = memoryview(chunk.data)

    def _end(self) -> None:
        self.finished, self.stream = True, None
        if self.offset != self.size or self.digest.digest() != self.expected:
            raise OSError(f"artifact {self.artifact_id!r}: received {self.offset} of "
                          f"{self.size} bytes, or a checksum that differs; download it again")

    def close(self) -> None:
        if self.stream is not None:
            self.stream.cancel()
            self.stream = None
        super().close()
