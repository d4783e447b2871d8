"""Artifacts through the proxy (the artifact service beside the journal service): round trips
through Optuna's own upload_artifact / download_artifact, many worker processes uploading at
once, the namespace's quota, refusals that name the limit, and uploads cut off mid-stream (the
client killed, the proxy killed): nothing partial visible afterwards, the quota given back,
no blob left behind. Real proxy, real Redis, real directory."""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import optuna
import pytest
from optuna.artifacts.exceptions import ArtifactNotFound

from optuna_grpc_storage import GrpcArtifactStore, RequestRejectedError
from optuna_grpc_storage.protocol.v1 import journal_pb2 as pb
from storage_proxy.testing import ProxyProcess, proxy_command
from tests import workers
from tests.conftest import RawClient, issue_token

optuna.logging.set_verbosity(optuna.logging.WARNING)


def chunks(artifact_id: str, data: bytes, *, size: int = 0, sha: bytes | None = None,
           piece: int = 1 << 20, **labels: object) -> list[pb.ArtifactChunk]:
    """An upload as the client sends it (info first, the SHA-256 last)."""
    out = [pb.ArtifactChunk(info=pb.ArtifactInfo(artifact_id=artifact_id, size=size, **labels),
                            data=data[:piece])]
    out += [pb.ArtifactChunk(data=data[i : i + piece]) for i in range(piece, len(data), piece)]
    out.append(pb.ArtifactChunk(sha256=hashlib.sha256(data).digest() if sha is None else sha))
    return out


def usage(raw: RawClient) -> tuple[int, int]:
    """(artifact bytes in use, artifacts) of the caller's namespace, as WhoAmI says."""
    quota = raw.WhoAmI(pb.WhoAmIRequest()).quota
    return quota.artifact_bytes_used, quota.artifacts


def listed(raw: RawClient, **labels: object) -> list[str]:
    pages = raw.ListArtifacts(pb.ListArtifactsRequest(**labels))
    return sorted(i.artifact_id for page in pages for i in page.artifacts)


def download(raw: RawClient, artifact_id: str) -> bytes:
    return b"".join(c.data for c in raw.DownloadArtifact(
        pb.DownloadArtifactRequest(artifact_id=artifact_id)))


def blobs_of(proxy: ProxyProcess, user: str) -> list[str]:
    folder = Path(proxy.artifact_store) / proxy.key_prefix / user
    return sorted(os.listdir(folder)) if folder.exists() else []


def eventually(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.1)


def set_quota(redis_url: str, user: str, *flags: str) -> None:
    subprocess.run(proxy_command("quota", "set", "--user", user, *flags, "--redis-url",
                                 redis_url), check=True, capture_output=True)
    time.sleep(0.7)  # the proxy's --auth-cache-seconds 0.5


@pytest.fixture
def store(proxy, token) -> Iterator[GrpcArtifactStore]:
    s = GrpcArtifactStore(proxy.endpoint, token)
    yield s
    s.close()


@pytest.mark.parametrize("size", [0, 1, 1000, (1 << 20) + 7, 40 << 20])
def test_round_trip_through_optunas_own_functions(make_storage, store, tmp_path, size) -> None:
    """Small, empty and large (40 MiB: many chunks, several quota steps): the bytes come back
    exactly, and Optuna records the artifact's metadata through the study's storage."""
    study = optuna.create_study(storage=make_storage())
    trial = study.ask()
    source = tmp_path / "model.bin"
    data = os.urandom(size)
    source.write_bytes(data)
    artifact_id = optuna.artifacts.upload_artifact(artifact_store=store, study_or_trial=trial,
                                                   file_path=str(source))
    study.tell(trial, 1.0)
    [meta] = optuna.artifacts.get_all_artifact_meta(study.trials[0], storage=study._storage)
    assert meta.artifact_id == artifact_id and meta.filename == "model.bin"
    copy = tmp_path / "copy.bin"
    optuna.artifacts.download_artifact(artifact_store=store, artifact_id=artifact_id,
                                       file_path=str(copy))
    assert copy.read_bytes() == data
    [info] = store.list()
    assert (info.artifact_id, info.size, info.sha256) == (artifact_id, size,
                                                        hashlib.sha256(data).digest())


def test_writes_replace_and_remove_deletes(proxy, store, token) -> None:
    raw = RawClient(proxy.endpoint, token)
    store.write("a", io.BytesIO(b"first"))
    store.write("a", io.BytesIO(b"second, longer"))  # Optuna's stores overwrite too
    with store.open_reader("a") as reader:
        assert reader.read() == b"second, longer"
    assert usage(raw) == (len(b"second, longer"), 1)
    store.remove("a")
    assert usage(raw) == (0, 0)
    with pytest.raises(ArtifactNotFound):
        store.open_reader("a")
    with pytest.raises(ArtifactNotFound):
        store.remove("a")


def test_a_stream_without_a_size_is_spooled_and_uploaded(store) -> None:
    read, write = os.pipe()
    os.write(write, b"from a pipe")
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        store.write("piped", pipe)
    with store.open_reader("piped") as reader:
        assert reader.read() == b"from a pipe"


def test_labels_list_by_study_and_trial(make_storage, store) -> None:
    study = optuna.create_study(study_name="labelled", storage=make_storage("lab"))
    for n in range(3):
        trial = study.ask()
        labelled = store.labelled(journal="lab", study="labelled", trial_number=trial.number)
        labelled.write(f"t{n}", io.BytesIO(b"x" * n))
    store.write("loose", io.BytesIO(b"no labels"))
    assert [i.artifact_id for i in store.list(study="labelled")] == ["t0", "t1", "t2"]
    assert [i.artifact_id for i in store.list(journal="lab", trial_number=1)] == ["t1"]
    assert [i.artifact_id for i in store.list()] == ["loose", "t0", "t1", "t2"]
    assert store.list(study="other") == []


def test_many_workers_upload_at_once(proxy, token, store) -> None:
    """8 processes, 6 uploads each (0 bytes to 3 MiB), at the same time: every artifact is
    there, byte for byte, and the quota counts each once."""
    sizes = [0, 10, 1 << 16, (1 << 20) + 1, 3 << 20, 12345]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(8) as pool:
        results = pool.starmap(workers.upload_artifacts,
                               [(proxy.endpoint, token, f"w{i}", sizes) for i in range(8)])
    expected = dict(line.split() for result in results for line in result)
    infos = {i.artifact_id: i for i in store.list()}
    assert sorted(infos) == sorted(expected)
    for artifact_id, digest in expected.items():
        with store.open_reader(artifact_id) as reader:
            assert hashlib.sha256(reader.read()).hexdigest() == digest
    assert usage(RawClient(proxy.endpoint, token)) == (8 * sum(sizes), 48)


def test_uploads_that_fail_store_nothing(proxy, token) -> None:
    """No checksum (a stream cut off), a wrong checksum, more than announced, fewer than
    announced, info twice, an empty upload: each refused with a message, nothing visible, the
    quota as it was, no blob left."""
    raw = RawClient(proxy.endpoint, token)
    raw.UploadArtifact(iter(chunks("kept", b"kept")))
    before = (listed(raw), usage(raw))
    data = os.urandom(3 << 20)
    cases = {
        "no checksum": (chunks("x", data)[:-1], grpc.StatusCode.INVALID_ARGUMENT,
                        "ended without the SHA-256"),
        "wrong checksum": (chunks("x", data, sha=b"\0" * 32), grpc.StatusCode.DATA_LOSS,
                           "is not the one sent"),
        "more than announced": (chunks("x", data, size=10), grpc.StatusCode.INVALID_ARGUMENT,
                                "more bytes than the 10 announced"),
        "fewer than announced": (chunks("x", data, size=len(data) + 1),
                                 grpc.StatusCode.INVALID_ARGUMENT, "announced"),
        "info twice": ([*chunks("x", data)[:1], *chunks("x", data)], grpc.StatusCode
                       .INVALID_ARGUMENT, "only the first chunk"),
        "no info": ([pb.ArtifactChunk(data=b"x")], grpc.StatusCode.INVALID_ARGUMENT,
                    "the first chunk of an upload carries info"),
        "empty": ([], grpc.StatusCode.INVALID_ARGUMENT, "empty upload"),
        "data after checksum": ([*chunks("x", b"abc"), pb.ArtifactChunk(data=b"d")],
                                grpc.StatusCode.INVALID_ARGUMENT, "must be the last"),
    }
    for name, (upload, code, text) in cases.items():
        with pytest.raises(grpc.RpcError) as e:
            raw.UploadArtifact(iter(upload))
        assert e.value.code() == code, name
        assert text in e.value.details(), (name, e.value.details())
    eventually(lambda: (listed(raw), usage(raw)) == before)
    user = raw.WhoAmI(pb.WhoAmIRequest()).namespace
    eventually(lambda: len(blobs_of(proxy, user)) == 1)  # the kept one


CRAFTED_IDS = ["", ".", "..", "../x", "a/../../b", "/etc/passwd", "a/b", "a\x00b", "x" * 129,
               "x" * 10_000, ".hidden", "-x", "a b", "a\n", "\u0434", "%2e%2e%2fx", "a\\b"]


def test_traversal_names_and_bad_labels_are_refused(proxy, token) -> None:
    raw = RawClient(proxy.endpoint, token)
    for bad in CRAFTED_IDS:
        calls = {
            "upload": lambda b=bad: raw.UploadArtifact(iter(chunks(b, b"data"))),
            "download": lambda b=bad: download(raw, b),
            "delete": lambda b=bad: raw.DeleteArtifact(pb.DeleteArtifactRequest(artifact_id=b)),
        }
        for name, call in calls.items():
            with pytest.raises(grpc.RpcError) as e:
                call()
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (name, bad)
            assert "invalid artifact id" in e.value.details() and len(e.value.details()) < 400
    for labels, text in (({"journal": "../x"}, "invalid journal name"),
                         ({"study": "s\x00"}, "no NUL"), ({"trial_number": -1}, ">= 0")):
        with pytest.raises(grpc.RpcError) as e:
            raw.UploadArtifact(iter(chunks("ok", b"data", **labels)))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and text in e.value.details()
    assert listed(raw) == [] and usage(raw) == (0, 0)
    with pytest.raises(RequestRejectedError, match="invalid artifact id"):
        GrpcArtifactStore(proxy.endpoint, token).write("../x", io.BytesIO(b"x"))


def test_downloads_out_of_range_or_of_a_replaced_version(proxy, token) -> None:
    raw = RawClient(proxy.endpoint, token)
    info = raw.UploadArtifact(iter(chunks("v", b"0123456789")))
    rest = b"".join(c.data for c in raw.DownloadArtifact(pb.DownloadArtifactRequest(
        artifact_id="v", offset=4, version=info.version)))
    assert rest == b"456789"
    with pytest.raises(grpc.RpcError) as e:
        download_at = pb.DownloadArtifactRequest(artifact_id="v", offset=11)
        list(raw.DownloadArtifact(download_at))
    assert e.value.code() == grpc.StatusCode.OUT_OF_RANGE
    raw.UploadArtifact(iter(chunks("v", b"new")))
    with pytest.raises(grpc.RpcError) as e:
        list(raw.DownloadArtifact(pb.DownloadArtifactRequest(artifact_id="v", offset=4,
                                                             version=info.version)))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "replaced since the download began" in e.value.details()


def test_limits_refuse_naming_the_quota(proxy, redis_server, new_user) -> None:
    """artifact_size (announced: refused before a byte is stored; not announced: as soon as
    it is passed), artifact_bytes and artifacts: RESOURCE_EXHAUSTED naming the quota, nothing
    stored, nothing consumed."""
    user, token = new_user()
    raw = RawClient(proxy.endpoint, token)
    set_quota(redis_server.url, user, "--artifact-size", "2MiB", "--artifact-bytes", "5MiB",
              "--artifacts", "3")
    big = os.urandom(3 << 20)
    for size in (len(big), 0):
        with pytest.raises(grpc.RpcError) as e:
            raw.UploadArtifact(iter(chunks("big", big, size=size)))
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert f"the quota 'artifact_size' of user {user!r}" in e.value.details()
    two = os.urandom(2 << 20)
    raw.UploadArtifact(iter(chunks("a", two, size=len(two))))
    raw.UploadArtifact(iter(chunks("b", two, size=len(two))))
    with pytest.raises(grpc.RpcError) as e:
        raw.UploadArtifact(iter(chunks("c", two, size=len(two))))
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"quota 'artifact_bytes' of user {user!r} exceeded: limit 5.0 MiB" \
        in e.value.details() and "--artifact-bytes SIZE" in e.value.details()
    raw.UploadArtifact(iter(chunks("c", b"small")))
    with pytest.raises(grpc.RpcError) as e:
        raw.UploadArtifact(iter(chunks("d", b"small")))
    assert "quota 'artifacts' of user" in e.value.details() and "limit 3" in e.value.details()
    eventually(lambda: usage(raw) == (2 * len(two) + 5, 3))
    assert listed(raw) == ["a", "b", "c"]
    eventually(lambda: len(blobs_of(proxy, user)) == 3)


def test_a_client_killed_mid_upload_leaves_nothing(proxy, new_user, tmp_path) -> None:
    user, token = new_user()
    raw = RawClient(proxy.endpoint, token)
    started = tmp_path / "started"
    child = multiprocessing.get_context("spawn").Process(
        target=workers.upload_forever, args=(proxy.endpoint, token, "cut", str(started)))
    child.start()
    eventually(started.exists)
    assert usage(raw)[0] > 0  # the upload in progress holds room in the quota
    assert [b.endswith(".part") for b in blobs_of(proxy, user)] == [True]
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    eventually(lambda: usage(raw) == (0, 0) and blobs_of(proxy, user) == [])
    assert listed(raw) == []
    with pytest.raises(grpc.RpcError) as e:
        download(raw, "cut")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.fixture
def own_proxy(redis_server, tmp_path) -> Iterator[ProxyProcess]:
    """A proxy of this test's own (to kill), with short leases and sweeps."""
    proxy = ProxyProcess(redis_server.url, data_dir=tmp_path / "proxy", extra_args=(
        "--workers", "1", "--artifact-lease-seconds", "2", "--artifact-sweep-seconds", "1",
        "--auth-cache-seconds", "0.5"))
    proxy.start()
    yield proxy
    proxy.stop()


def test_a_proxy_killed_mid_upload_leaves_nothing(own_proxy, redis_server, tmp_path) -> None:
    """kill -9 while an upload streams: after a restart nothing is visible, the lease runs
    out (the quota comes back) and the sweep removes the partial blob."""
    user = "killed-" + os.urandom(4).hex()
    token = issue_token(redis_server.url, user)
    raw = RawClient(own_proxy.endpoint, token)
    raw.UploadArtifact(iter(chunks("kept", b"kept")))
    sent = threading.Event()

    def slow() -> Iterator[pb.ArtifactChunk]:
        yield from chunks("cut", os.urandom(3 << 20))[:-1]
        sent.set()
        time.sleep(60)

    failed: list[grpc.StatusCode] = []

    def upload() -> None:
        try:
            raw.UploadArtifact(slow())
        except grpc.RpcError as e:
            failed.append(e.code())

    uploader = threading.Thread(target=upload, daemon=True)
    uploader.start()
    assert sent.wait(30)
    eventually(lambda: any(b.endswith(".part") for b in blobs_of(own_proxy, user)))
    assert usage(raw)[0] > 4
    own_proxy.kill()
    uploader.join(30)
    assert failed == [grpc.StatusCode.UNAVAILABLE]
    own_proxy.start()
    raw = RawClient(own_proxy.endpoint, token)
    assert listed(raw) == ["kept"]
    eventually(lambda: usage(raw) == (4, 1))
    eventually(lambda: len(blobs_of(own_proxy, user)) == 1)
    assert download(raw, "kept") == b"kept"


def test_a_proxy_without_an_artifact_store_says_so(redis_server, tmp_path) -> None:
    with ProxyProcess(redis_server.url, data_dir=tmp_path, artifact_store="none") as proxy:
        token = issue_token(redis_server.url, "noart-" + os.urandom(3).hex())
        with pytest.raises(RequestRejectedError, match=r"keeps no artifacts.*--artifact-store"):
            GrpcArtifactStore(proxy.endpoint, token).write("a", io.BytesIO(b"x"))


def test_a_wrong_artifact_store_stops_serve_at_once(tmp_path) -> None:
    result = subprocess.run(proxy_command("serve", "--data-dir", str(tmp_path), "--port", "0",
                                          "--artifact-store", "ftp://host/x"),
                            capture_output=True, text=True, timeout=60, env={
                                **os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert result.returncode == 2
    assert "--artifact-store 'ftp://host/x': use a directory" in result.stderr
