"""The client over TLS: grpcs:// and https:// mean TLS (plaintext stays the default for a bare
host:port), a CA bundle and a client certificate from arguments or OPTUNA_GRPC_STORAGE_TLS_*
variables, mTLS refused without a client certificate and with a wrong CA (UNAVAILABLE, a
message that says what to check), a rotated server certificate picked up, and fork safety."""

from __future__ import annotations

import io
import multiprocessing
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from optuna_grpc_storage import GrpcArtifactStore, GrpcJournalStorage
from optuna_grpc_storage.runner.controller import Controller
from optuna_grpc_storage.storage.client import JournalClient
from optuna_grpc_storage.storage.connection import Connection, parse_endpoint
from optuna_grpc_storage.storage.errors import ProxyUnavailableError
from optuna_grpc_storage.storage.tls import TLS_CA_ENV, TLS_CERT_ENV, TLS_KEY_ENV
from storage_proxy.process.embedded_redis import RedisProcess
from storage_proxy.testing import ProxyProcess
from tests.certificates import PKI, issue

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(autouse=True)
def _no_tls_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (TLS_CA_ENV, TLS_CERT_ENV, TLS_KEY_ENV):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return PKI.make(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def mtls(redis_server: RedisProcess, pki: PKI,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ProxyProcess, str]]:
    with ProxyProcess(redis_server.url, data_dir=tmp_path_factory.mktemp("mtls"),
                      key_prefix="mtlsc", extra_args=("--workers", "1",
                                                       *pki.server_args(mtls=True))) as proxy:
        yield proxy, proxy.issue_token("tls-user")


def client_files(pki: PKI) -> dict[str, str]:
    return {"tls_ca": str(pki.ca_file), "tls_cert": pki.file("client.crt"),
            "tls_key": pki.file("client.key")}


@pytest.mark.parametrize("endpoint, expected", [
    ("https://proxy.example.com:443", ("proxy.example.com:443", True)),
    ("https://proxy.example.com", ("proxy.example.com:443", True)),
    ("https://proxy.example.com/", ("proxy.example.com:443", True)),
    ("http://proxy.example.com:8080", ("proxy.example.com:8080", False)),
    ("grpcs://proxy:13000", ("proxy:13000", True)),
])
def test_https_means_tls(endpoint: str, expected: tuple[str, bool]) -> None:
    assert parse_endpoint(endpoint) == expected
    assert Connection(endpoint, "t").tls is expected[1]


def test_plaintext_stays_the_default_and_tls_settings_turn_it_on(pki: PKI) -> None:
    assert Connection("proxy:13000", "t").tls is False
    assert Connection("proxy:13000", "t", tls_ca=pki.ca.cert_pem).tls is True
    with pytest.raises(ValueError, match="asks for plaintext"):
        Connection("grpc://proxy:13000", "t", tls_ca=pki.ca.cert_pem)
    with pytest.raises(ValueError, match="needs its key"):
        Connection("grpcs://proxy:13000", "t", tls_cert=pki.file("client.crt"))
    with pytest.raises(ValueError, match=r"cannot read the CA bundle '/nonexistent\.pem'"):
        Connection("grpcs://proxy:13000", "t", tls_ca="/nonexistent.pem")


def test_a_study_over_mtls_from_arguments(mtls: tuple[ProxyProcess, str], pki: PKI) -> None:
    proxy, token = mtls
    storage = GrpcJournalStorage(f"grpcs://{proxy.endpoint}", token, "tls-args",
                                 **client_files(pki))
    study = optuna.create_study(study_name="over-tls", storage=storage)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=5)
    again = GrpcJournalStorage(f"grpcs://{proxy.endpoint}", token, "tls-args",
                               tls_ca=pki.ca.cert_pem, tls_cert=pki.client.cert_pem,
                               tls_key=pki.client.key_pem)  # PEM bytes work as well
    assert len(optuna.load_study(study_name="over-tls", storage=again).trials) == 5
    store = GrpcArtifactStore(f"grpcs://{proxy.endpoint}", token, **client_files(pki))
    store.write("tls-artifact", io.BytesIO(b"over TLS"))
    with store.open_reader("tls-artifact") as f:
        assert f.read() == b"over TLS"


def test_the_environment_gives_the_tls_files(mtls: tuple[ProxyProcess, str], pki: PKI,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    proxy, token = mtls
    files = client_files(pki)
    monkeypatch.setenv(TLS_CA_ENV, files["tls_ca"])
    monkeypatch.setenv(TLS_CERT_ENV, files["tls_cert"])
    monkeypatch.setenv(TLS_KEY_ENV, files["tls_key"])
    storage = GrpcJournalStorage(proxy.endpoint, token, "tls-env")  # bare host:port + env
    assert storage.grpc_backend.client.connection.tls
    assert storage.grpc_backend.client.who_am_i().namespace


def test_the_controller_takes_tls_arguments(mtls: tuple[ProxyProcess, str], pki: PKI) -> None:
    proxy, token = mtls
    controller = Controller(token, f"grpcs://{proxy.endpoint}", **client_files(pki))
    try:
        assert controller.namespace
        assert controller.get_storage().grpc_backend.client.connection.tls
        assert controller.get_artifact_store().connection.tls_config.cert is not None
    finally:
        Controller._instances.pop((f"grpcs://{proxy.endpoint}", token), None)


def test_mtls_without_a_client_certificate_is_refused_clearly(
        mtls: tuple[ProxyProcess, str], pki: PKI) -> None:
    proxy, token = mtls
    connection = Connection(f"grpcs://{proxy.endpoint}", token, tls_ca=str(pki.ca_file),
                            retry_deadline=1.0)
    with pytest.raises(ProxyUnavailableError) as refused:
        JournalClient(connection, use_stream=False).who_am_i()
    text = str(refused.value)
    assert "UNAVAILABLE" in text and "client certificate" in text, text
    assert TLS_CERT_ENV in text


def test_a_wrong_ca_is_refused(mtls: tuple[ProxyProcess, str], pki: PKI) -> None:
    proxy, token = mtls
    wrong = issue("not-the-proxys-ca")
    files = {**client_files(pki), "tls_ca": wrong.cert_pem}
    storage_args = {"retry_deadline": 1.0, **files}
    with pytest.raises(ProxyUnavailableError, match="CA bundle"):
        GrpcJournalStorage(f"grpcs://{proxy.endpoint}", token, "wrong-ca", **storage_args)


def test_plaintext_to_a_tls_proxy_says_to_use_grpcs(mtls: tuple[ProxyProcess, str]) -> None:
    proxy, token = mtls
    with pytest.raises(ProxyUnavailableError) as refused:
        GrpcJournalStorage(proxy.endpoint, token, "plain", retry_deadline=1.0)
    assert "UNAVAILABLE" in str(refused.value) and "grpcs://" in str(refused.value)


def test_a_rotated_server_certificate_is_picked_up(redis_server: RedisProcess,
                                                   tmp_path: Path) -> None:
    pki = PKI.make(tmp_path / "pki")
    with ProxyProcess(redis_server.url, data_dir=tmp_path / "proxy", key_prefix="rotc",
                      extra_args=("--workers", "1", *pki.server_args())) as proxy:
        token = proxy.issue_token("rotating")
        endpoint = f"grpcs://{proxy.endpoint}"
        storage = GrpcJournalStorage(endpoint, token, "rot", tls_ca=str(pki.ca_file))
        study = optuna.create_study(study_name="rot", storage=storage)
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
        # cert-manager renews the certificate (same CA, new key) while the proxy runs
        issue("storage-proxy", pki.ca, server=True).write(pki.directory, "server")
        served = (pki.directory / "server.crt").read_bytes()
        deadline = time.monotonic() + 10
        while True:
            fresh = GrpcJournalStorage(endpoint, token, "rot", tls_ca=str(pki.ca_file))
            host, port = proxy.endpoint.split(":")
            got = ssl.get_server_certificate((host, int(port)))
            if ssl.PEM_cert_to_DER_cert(got) == ssl.PEM_cert_to_DER_cert(served.decode()):
                break
            assert time.monotonic() < deadline, "the renewed certificate was not served"
            time.sleep(0.2)
        assert len(optuna.load_study(study_name="rot", storage=fresh).trials) == 2
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)  # the old client too
        assert len(study.trials) == 4


STORAGE: GrpcJournalStorage | None = None


def _forked(name: str) -> None:
    assert STORAGE is not None
    optuna.load_study(study_name=name, storage=STORAGE).optimize(
        lambda t: t.suggest_float("x", 0, 1), n_trials=5)


def test_forked_workers_use_an_inherited_tls_storage(mtls: tuple[ProxyProcess, str],
                                                     pki: PKI) -> None:
    global STORAGE
    proxy, token = mtls
    STORAGE = GrpcJournalStorage(f"grpcs://{proxy.endpoint}", token, "tls-fork",
                                 **client_files(pki))
    optuna.create_study(study_name="forked", storage=STORAGE).optimize(
        lambda t: t.suggest_float("x", 0, 1), n_trials=1)  # the parent has a live channel
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_forked, args=("forked",)) for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert [w.exitcode for w in workers] == [0, 0, 0], [w.pid for w in workers]
    trials = optuna.load_study(study_name="forked", storage=STORAGE).trials
    assert len([t for t in trials if t.state.is_finished()]) == 16
