"""The S3 artifact store (--artifact-store s3://bucket/prefix, through boto3) against a local
S3-compatible server that the fixture starts: moto's server mode (`moto[server]` from PyPI), a
real HTTP server on loopback speaking the S3 API. Round trips small, empty and multipart-sized,
replacement and deletion reaching the bucket, and an upload cut off by a killed proxy: its
multipart upload is aborted by the sweep and nothing is visible."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import grpc
import pytest

from optuna_grpc_storage import GrpcArtifactStore
from optuna_grpc_storage.protocol.v1 import journal_pb2 as pb
from storage_proxy.process.children import start_child
from storage_proxy.testing import ProxyProcess
from tests.conftest import RawClient, issue_token
from tests.test_artifacts import chunks, eventually, listed, usage

boto3 = pytest.importorskip("boto3")
pytest.importorskip("moto.server")
BUCKET = "ogs-artifacts"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on a free loopback port, for this module; the bucket created."""
    port = free_port()
    server = start_child([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                          str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=url, **_lower(CREDENTIALS))
    deadline = time.monotonic() + 60
    while True:
        try:
            client.create_bucket(Bucket=BUCKET)
            break
        except Exception:
            assert time.monotonic() < deadline and server.poll() is None, "moto did not start"
            time.sleep(0.2)
    yield url
    server.terminate()
    server.wait(30)


def _lower(env: dict[str, str]) -> dict[str, str]:
    return {"aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
            "region_name": env["AWS_DEFAULT_REGION"]}


@pytest.fixture(scope="module")
def bucket(s3_endpoint):
    return boto3.client("s3", endpoint_url=s3_endpoint, **_lower(CREDENTIALS))


@pytest.fixture(scope="module")
def s3_proxy(redis_server, s3_endpoint, tmp_path_factory) -> Iterator[ProxyProcess]:
    proxy = ProxyProcess(redis_server.url, data_dir=tmp_path_factory.mktemp("s3proxy"),
                         artifact_store=f"s3://{BUCKET}/team-a",
                         env={**CREDENTIALS, "AWS_ENDPOINT_URL_S3": s3_endpoint},
                         extra_args=("--workers", "1", "--artifact-lease-seconds", "2",
                                     "--artifact-sweep-seconds", "1"))
    proxy.start()
    yield proxy
    proxy.stop()


def objects(bucket, user: str) -> list[str]:
    found = bucket.list_objects_v2(Bucket=BUCKET, Prefix=f"team-a/ogs/{user}/")
    return [o["Key"] for o in found.get("Contents", [])]


def multipart(bucket, user: str) -> list[str]:
    found = bucket.list_multipart_uploads(Bucket=BUCKET, Prefix=f"team-a/ogs/{user}/")
    return [u["Key"] for u in found.get("Uploads", [])]


def test_round_trips_replace_and_delete_reach_the_bucket(s3_proxy, redis_server, bucket):
    user = "s3-" + os.urandom(4).hex()
    store = GrpcArtifactStore(s3_proxy.endpoint, issue_token(redis_server.url, user))
    payloads = {"empty": b"", "small": b"hello", "big": os.urandom(20 << 20)}  # 3 parts
    for name, data in payloads.items():
        store.write(name, io.BytesIO(data))
    for name, data in payloads.items():
        with store.open_reader(name) as reader:
            assert reader.read() == data, name
    assert len(objects(bucket, user)) == 3 and multipart(bucket, user) == []
    store.write("small", io.BytesIO(b"replaced"))
    with store.open_reader("small") as reader:
        assert reader.read() == b"replaced"
    eventually(lambda: len(objects(bucket, user)) == 3)  # the old version's object is gone
    store.remove("big")
    assert [i.artifact_id for i in store.list()] == ["empty", "small"]
    eventually(lambda: len(objects(bucket, user)) == 2)


def test_a_proxy_killed_mid_upload_leaves_nothing_in_the_bucket(s3_proxy, redis_server, bucket):
    user = "s3kill-" + os.urandom(4).hex()
    token = issue_token(redis_server.url, user)
    raw = RawClient(s3_proxy.endpoint, token)
    sent = threading.Event()

    def slow() -> Iterator[pb.ArtifactChunk]:
        yield from chunks("cut", os.urandom(12 << 20))[:-1]  # past the first 8 MiB part
        sent.set()
        time.sleep(60)

    def upload() -> None:
        with contextlib.suppress(grpc.RpcError):  # UNAVAILABLE: the proxy was killed
            raw.UploadArtifact(slow())

    threading.Thread(target=upload, daemon=True).start()
    assert sent.wait(30)
    eventually(lambda: multipart(bucket, user) != [])
    s3_proxy.kill()
    s3_proxy.start()
    raw = RawClient(s3_proxy.endpoint, token)
    assert listed(raw) == []
    eventually(lambda: usage(raw) == (0, 0))
    eventually(lambda: multipart(bucket, user) == [] and objects(bucket, user) == [])
