"""TLS of the proxy's ports: the certificate files, checked at start and read again when they
change (cert-manager rotates them in place), for gRPC and for /metrics.

gRPC asks `CertificateFiles.fetch` before each new handshake (grpc's dynamic server
credentials); it answers None (keep the current certificate) unless a file changed, so the
cost is three stat() calls per connection, never per call. A half-written rotation (a key that
does not match its certificate yet) is logged and the current certificate kept, so a rotation
never takes the port down. Connections already open keep the certificate they began with.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path

import grpc

log = logging.getLogger("storage_proxy")

RELOAD_SECONDS = 10.0  # how often /metrics looks at the files (gRPC looks at each handshake)


class TLSConfigError(ValueError):
    """A TLS flag is wrong: the message names the flag and what to fix."""


def _signature(paths: list[str]) -> tuple[tuple[int, int, int], ...]:
    """What changes when a file is rewritten or a Secret volume swaps its symlink."""
    out = []
    for path in paths:
        st = os.stat(path)
        out.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


def check_pair(cert: str, key: str, client_ca: str | None = None) -> None:
    """TLSConfigError unless the files hold a certificate, its key and (if given) CA certs."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as e:
        raise TLSConfigError(f"--tls-cert {cert} / --tls-key {key}: cannot use them as a "
                             f"certificate and its private key ({e})") from None
    if client_ca:
        try:
            context.load_verify_locations(client_ca)
        except (OSError, ssl.SSLError) as e:
            raise TLSConfigError(f"--tls-client-ca {client_ca}: not a file of PEM CA "
                                 f"certificates ({e})") from None


@dataclass
class CertificateFiles:
    """--tls-cert, --tls-key and --tls-client-ca, and what was last read from them."""

    cert: str
    key: str
    client_ca: str | None = None
    _seen: tuple[tuple[int, int, int], ...] = field(default=(), repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_flags(cls, cert: str, key: str, client_ca: str) -> CertificateFiles | None:
        """None without TLS; TLSConfigError for a partial or unusable set of flags."""
        if not (cert or key or client_ca):
            return None
        if not (cert and key):
            raise TLSConfigError("TLS needs both --tls-cert and --tls-key (PEM files)"
                                 + ("; --tls-client-ca alone is not enough" if client_ca
                                    else ""))
        files = cls(cert, key, client_ca or None)
        check_pair(cert, key, files.client_ca)
        return files

    @property
    def paths(self) -> list[str]:
        return [self.cert, self.key, *([self.client_ca] if self.client_ca else [])]

    @property
    def mode(self) -> str:
        return "mTLS" if self.client_ca else "TLS"

    def changed(self) -> bool:
        """True once per change of any of the files (False while one is missing)."""
        try:
            now = _signature(self.paths)
        except OSError:
            return False
        with self._lock:
            if now == self._seen:
                return False
            self._seen = now
            return True

    def configuration(self) -> grpc.ServerCertificateConfiguration:
        pair = (Path(self.key).read_bytes(), Path(self.cert).read_bytes())
        ca = Path(self.client_ca).read_bytes() if self.client_ca else None
        return grpc.ssl_server_certificate_configuration([pair], root_certificates=ca)

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """For gRPC, before a handshake: the new configuration if a file changed, else None."""
        if not self.changed():
            return None
        try:
            check_pair(self.cert, self.key, self.client_ca)
            config = self.configuration()
        except (TLSConfigError, OSError) as e:
            log.warning("TLS files changed but cannot be used yet, keeping the current "
                        "certificate: %s", e)
            with self._lock:
                self._seen = ()  # look again at the next handshake
            return None
        log.info("TLS certificate reloaded from %s", self.cert)
        return config

    def server_credentials(self) -> grpc.ServerCredentials:
        self.changed()  # what is read now is the baseline
        return grpc.dynamic_ssl_server_credentials(
            self.configuration(), self.fetch,
            require_client_authentication=self.client_ca is not None)

    def watch_context(self, context: ssl.SSLContext, stop: threading.Event) -> threading.Thread:
        """Reload `context` (the /metrics server's) when the files change, until `stop`."""
        files = CertificateFiles(self.cert, self.key, self.client_ca)
        files.changed()

        def run() -> None:
            while not stop.wait(RELOAD_SECONDS):
                if files.changed():
                    try:
                        context.load_cert_chain(self.cert, self.key)
                    except (OSError, ssl.SSLError) as e:
                        log.warning("TLS files of /metrics changed but cannot be used yet: %s",
                                    e)
                        files._seen = ()

        thread = threading.Thread(target=run, name="metrics-tls-reload", daemon=True)
        thread.start()
        return thread
