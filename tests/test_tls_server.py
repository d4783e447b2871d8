"""TLS on the proxy (`serve --tls-cert/--tls-key [--tls-client-ca]`): the gRPC port and /metrics
speak TLS with certificates made here, a rotated certificate is served without a restart, mTLS
refuses a caller without a client certificate, and both ports bind loopback by default."""

from __future__ import annotations

import argparse
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from storage_proxy.config import add_serve_arguments, settings_from_args
from storage_proxy.process.embedded_redis import RedisProcess
from storage_proxy.testing import ProxyProcess, proxy_command
from tests.certificates import PKI, issue


def health(channel: grpc.Channel, timeout: float = 5.0) -> int:
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                     timeout=timeout).status


def secure(endpoint: str, ca: bytes, client: tuple[bytes, bytes] | None = None) -> grpc.Channel:
    key, cert = client or (None, None)
    creds = grpc.ssl_channel_credentials(ca, private_key=key, certificate_chain=cert)
    return grpc.secure_channel(endpoint, creds)


@pytest.fixture
def pki(tmp_path: Path) -> PKI:
    return PKI.make(tmp_path / "pki")


@pytest.fixture
def tls_proxy(redis_server: RedisProcess, pki: PKI, tmp_path: Path) -> Iterator[ProxyProcess]:
    with ProxyProcess(redis_server.url, data_dir=tmp_path / "proxy", key_prefix="tls",
                      extra_args=("--workers", "1", *pki.server_args())) as proxy:
        yield proxy


@pytest.fixture
def mtls_proxy(redis_server: RedisProcess, pki: PKI, tmp_path: Path) -> Iterator[ProxyProcess]:
    with ProxyProcess(redis_server.url, data_dir=tmp_path / "proxy", key_prefix="mtls",
                      extra_args=("--workers", "1", *pki.server_args(mtls=True))) as proxy:
        yield proxy


def test_the_port_speaks_tls_and_refuses_plaintext(tls_proxy: ProxyProcess, pki: PKI) -> None:
    assert "(TLS)" in tls_proxy.log_tail()
    with secure(tls_proxy.endpoint, pki.ca.cert_pem) as channel:
        assert health(channel) == health_pb2.HealthCheckResponse.SERVING
    with grpc.insecure_channel(tls_proxy.endpoint) as channel, \
            pytest.raises(grpc.RpcError) as refused:
        health(channel, timeout=3)
    assert refused.value.code() in (grpc.StatusCode.UNAVAILABLE,
                                    grpc.StatusCode.DEADLINE_EXCEEDED)


def test_a_certificate_of_another_ca_is_not_trusted(tls_proxy: ProxyProcess) -> None:
    other = issue("another-ca")
    with secure(tls_proxy.endpoint, other.cert_pem) as channel, \
            pytest.raises(grpc.RpcError) as refused:
        health(channel, timeout=3)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_mtls_needs_a_client_certificate_of_the_ca(mtls_proxy: ProxyProcess, pki: PKI,
                                                   tmp_path: Path) -> None:
    assert "(mTLS)" in mtls_proxy.log_tail()
    with secure(mtls_proxy.endpoint, pki.ca.cert_pem) as channel, \
            pytest.raises(grpc.RpcError) as refused:
        health(channel, timeout=3)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    stranger = issue("mallory", issue("another-ca"), client=True)
    with secure(mtls_proxy.endpoint, pki.ca.cert_pem,
                (stranger.key_pem, stranger.cert_pem)) as channel, \
            pytest.raises(grpc.RpcError):
        health(channel, timeout=3)
    with secure(mtls_proxy.endpoint, pki.ca.cert_pem,
                (pki.client.key_pem, pki.client.cert_pem)) as channel:
        assert health(channel) == health_pb2.HealthCheckResponse.SERVING


def test_a_rotated_certificate_is_served_without_a_restart(tls_proxy: ProxyProcess,
                                                           pki: PKI) -> None:
    pid = tls_proxy.proc.pid if tls_proxy.proc else None
    new_ca = issue("rotated-ca")
    issue("storage-proxy", new_ca, server=True).write(pki.directory, "server")
    deadline = time.monotonic() + 10
    while True:  # each new connection asks for the files; the first after the change sees it
        with secure(tls_proxy.endpoint, new_ca.cert_pem) as channel:
            try:
                assert health(channel, timeout=3) == health_pb2.HealthCheckResponse.SERVING
                break
            except grpc.RpcError:
                assert time.monotonic() < deadline, tls_proxy.log_tail()
        time.sleep(0.2)
    with secure(tls_proxy.endpoint, pki.ca.cert_pem) as channel, pytest.raises(grpc.RpcError):
        health(channel, timeout=3)  # the old CA no longer vouches for what is served
    assert tls_proxy.proc is not None and tls_proxy.proc.pid == pid
    assert "TLS certificate reloaded" in tls_proxy.log_tail()


def test_a_half_written_rotation_keeps_the_current_certificate(tls_proxy: ProxyProcess,
                                                               pki: PKI) -> None:
    other = issue("storage-proxy", issue("rotated-ca"), server=True)
    (pki.directory / "server.key").write_bytes(other.key_pem)  # the key first, cert not yet
    with secure(tls_proxy.endpoint, pki.ca.cert_pem) as channel:
        assert health(channel) == health_pb2.HealthCheckResponse.SERVING
    assert "cannot be used yet" in tls_proxy.log_tail()


def test_metrics_are_https_with_the_same_certificate(tls_proxy: ProxyProcess,
                                                     pki: PKI) -> None:
    assert tls_proxy.metrics_url.startswith("https://127.0.0.1:")
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    with urllib.request.urlopen(tls_proxy.metrics_url, context=context, timeout=10) as r:
        assert b"storage_proxy_calls" in r.read()
    plain = tls_proxy.metrics_url.replace("https://", "http://")
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(plain, timeout=5).read()


def test_mtls_metrics_need_a_client_certificate(mtls_proxy: ProxyProcess, pki: PKI) -> None:
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
        urllib.request.urlopen(mtls_proxy.metrics_url, context=context, timeout=5).read()
    context.load_cert_chain(pki.file("client.crt"), pki.file("client.key"))
    with urllib.request.urlopen(mtls_proxy.metrics_url, context=context, timeout=10) as r:
        assert r.status == 200


@pytest.mark.parametrize("flags, message", [
    (("--tls-cert", "{d}/server.crt"), "needs both --tls-cert and --tls-key"),
    (("--tls-client-ca", "{d}/ca.crt"), "--tls-client-ca alone is not enough"),
    (("--tls-cert", "{d}/server.crt", "--tls-key", "{d}/client.key"), "cannot use them"),
    (("--tls-cert", "{d}/server.crt", "--tls-key", "{d}/server.key", "--tls-client-ca",
      "{d}/missing.crt"), "--tls-client-ca"),
])
def test_wrong_tls_flags_are_refused_at_start(pki: PKI, tmp_path: Path, flags: tuple[str, ...],
                                              message: str) -> None:
    args = [f.format(d=pki.directory) for f in flags]
    out = subprocess.run(proxy_command("serve", "--data-dir", str(tmp_path / "d"), "--port",
                                       "0", *args), capture_output=True, text=True,
                         timeout=60)
    assert out.returncode != 0
    assert message in out.stderr, out.stderr
    assert not (tmp_path / "d" / "redis.url").exists()  # refused before Redis started


def test_both_ports_bind_loopback_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("STORAGE_PROXY_HOST", "STORAGE_PROXY_METRICS_BIND"):
        monkeypatch.delenv(name, raising=False)
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    settings = settings_from_args(parser.parse_args([]))
    assert (settings.host, settings.metrics_bind) == ("127.0.0.1", "127.0.0.1")
    assert (settings.tls_cert, settings.tls_key, settings.tls_client_ca) == ("", "", "")
    monkeypatch.setenv("STORAGE_PROXY_TLS_CERT", "/etc/tls/tls.crt")
    monkeypatch.setenv("STORAGE_PROXY_METRICS_BIND", "0.0.0.0")
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    settings = settings_from_args(parser.parse_args([]))
    assert (settings.tls_cert, settings.metrics_bind) == ("/etc/tls/tls.crt", "0.0.0.0")


def test_a_group_of_server_processes_serves_tls(redis_server: RedisProcess, pki: PKI,
                                                tmp_path: Path) -> None:
    with ProxyProcess(redis_server.url, data_dir=tmp_path / "proxy", key_prefix="tls2",
                      extra_args=("--workers", "2", *pki.server_args())) as proxy:
        for _ in range(4):  # new connections, spread over both processes
            with secure(proxy.endpoint, pki.ca.cert_pem) as channel:
                assert health(channel) == health_pb2.HealthCheckResponse.SERVING
        context = ssl.create_default_context(cafile=str(pki.ca_file))
        with urllib.request.urlopen(proxy.metrics_url, context=context, timeout=10) as r:
            assert r.status == 200
