"""Blobs as objects of an S3-compatible bucket, through boto3 (the library Optuna's
Boto3ArtifactStore uses): key `<prefix><namespace>/<version>`. An upload is a multipart upload
in parts of PART_BYTES (one put_object when it is smaller), so the proxy holds at most one
part per upload; an object exists only once the upload is complete. Credentials, region and
endpoint come from the environment (AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL_S3, an IAM role...),
never from a flag. boto3 calls block, so each runs in a thread."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

PART_BYTES = 8 << 20  # S3 wants parts of at least 5 MiB (but the last)
_MISSING = ("NoSuchKey", "404", "NotFound")


class S3Blobs:
    def __init__(self, bucket: str, prefix: str, client: Any = None) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.client = client or boto3.client(
            "s3", config=Config(retries={"max_attempts": 5, "mode": "standard"}))
        self.description = f"bucket s3://{bucket}/{prefix}"

    def key(self, namespace: str, version: str) -> str:
        return f"{self.prefix}{namespace}/{version}"

    async def create(self, namespace: str, version: str) -> _Upload:
        return _Upload(self, self.key(namespace, version))

    async def open(self, namespace: str, version: str, offset: int) -> _Download:
        key = self.key(namespace, version)

        def start() -> Any:
            extra = {"Range": f"bytes={offset}-"} if offset else {}
            try:
                return self.client.get_object(Bucket=self.bucket, Key=key, **extra)["Body"]
            except ClientError as e:
                code = e.response.get("Error", {}).get("Code")
                if code in _MISSING:
                    raise FileNotFoundError(key) from None
                if code == "InvalidRange":  # the offset is the end: nothing left to read
                    return None
                raise

        return _Download(await asyncio.to_thread(start))

    async def delete(self, namespace: str, version: str) -> None:
        key = self.key(namespace, version)

        def remove() -> None:
            self.client.delete_object(Bucket=self.bucket, Key=key)
            for upload in self._multipart(key):
                self._abort(key, upload["UploadId"])

        await asyncio.to_thread(remove)

    def _multipart(self, prefix: str) -> list[dict[str, Any]]:
        pages = self.client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket, Prefix=prefix)
        return [u for page in pages for u in page.get("Uploads", [])]

    def _abort(self, key: str, upload_id: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "NoSuchUpload":
                raise

    async def blobs(self, min_age: float) -> AsyncIterator[tuple[str, list[str]]]:
        def old() -> dict[str, list[str]]:
            cutoff = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(
                seconds=min_age)
            found: dict[str, list[str]] = {}
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix)
            items = [(o["Key"], o["LastModified"]) for p in pages for o in p.get("Contents", [])]
            items += [(u["Key"], u["Initiated"]) for u in self._multipart(self.prefix)]
            for key, when in items:
                namespace, _, version = key[len(self.prefix):].partition("/")
                if version and "/" not in version and when < cutoff:
                    found.setdefault(namespace, []).append(version)
            return found

        for namespace, versions in (await asyncio.to_thread(old)).items():
            yield namespace, sorted(set(versions))


class _Upload:
    """One blob being written: parts buffered up to PART_BYTES, then sent."""

    def __init__(self, blobs: S3Blobs, key: str) -> None:
        self.blobs, self.key = blobs, key
        self.buffer: list[bytes] = []
        self.buffered = 0
        self.upload_id: str | None = None
        self.parts: list[dict[str, Any]] = []

    @property
    def _client(self) -> Any:
        return self.blobs.client

    async def write(self, data: bytes) -> None:
        self.buffer.append(data)
        self.buffered += len(data)
        if self.buffered >= PART_BYTES:
            await asyncio.to_thread(self._send_part)

    def _send_part(self) -> None:
        body, self.buffer, self.buffered = b"".join(self.buffer), [], 0
        if self.upload_id is None:
            self.upload_id = self._client.create_multipart_upload(
                Bucket=self.blobs.bucket, Key=self.key)["UploadId"]
        number = len(self.parts) + 1
        answer = self._client.upload_part(Bucket=self.blobs.bucket, Key=self.key,
                                          UploadId=self.upload_id, PartNumber=number, Body=body)
        self.parts.append({"PartNumber": number, "ETag": answer["ETag"]})

    async def finish(self) -> None:
        def done() -> None:
            if self.upload_id is None:
                body, self.buffer = b"".join(self.buffer), []
                self._client.put_object(Bucket=self.blobs.bucket, Key=self.key, Body=body)
                return
            if self.buffered:
                self._send_part()
            self._client.complete_multipart_upload(
                Bucket=self.blobs.bucket, Key=self.key, UploadId=self.upload_id,
                MultipartUpload={"Parts": self.parts})

        await asyncio.to_thread(done)

    async def abort(self) -> None:
        self.buffer = []
        if self.upload_id is not None:
            await asyncio.to_thread(self.blobs._abort, self.key, self.upload_id)


class _Download:
    def __init__(self, body: Any) -> None:
        self.body = body

    async def read(self, size: int) -> bytes:
        if self.body is None:
            return b""
        return await asyncio.to_thread(self.body.read, size)

    async def close(self) -> None:
        if self.body is not None:
            await asyncio.to_thread(self.body.close)
