"""The client's TLS settings: which CA to trust and which certificate to present (mTLS).

Each comes from an argument (a path, or the PEM bytes themselves) or else from the
environment (a path): OPTUNA_GRPC_STORAGE_TLS_CA, _TLS_CERT and _TLS_KEY. The files are read
once, when the Connection is made, so a worker process does not need them after it started.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import grpc

TLS_CA_ENV = "OPTUNA_GRPC_STORAGE_TLS_CA"
TLS_CERT_ENV = "OPTUNA_GRPC_STORAGE_TLS_CERT"
TLS_KEY_ENV = "OPTUNA_GRPC_STORAGE_TLS_KEY"

PEM = str | os.PathLike[str] | bytes  # a path, or the PEM text itself


def _read(value: PEM | None, env: str, what: str) -> bytes | None:
    if value is None:
        value = os.environ.get(env) or None
        if value is None:
            return None
    if isinstance(value, bytes):
        return value
    try:
        return Path(value).read_bytes()
    except OSError as e:
        raise ValueError(f"cannot read the {what} {str(value)!r} (argument or ${env}): "
                         f"{e.strerror or e}") from None


@dataclass(frozen=True)
class ClientTLS:
    """PEM bytes; None: the system's CAs / no client certificate."""

    ca: bytes | None = None
    cert: bytes | None = None
    key: bytes | None = field(default=None, repr=False)

    @classmethod
    def resolve(cls, ca: PEM | None = None, cert: PEM | None = None,
                key: PEM | None = None) -> ClientTLS:
        tls = cls(_read(ca, TLS_CA_ENV, "CA bundle"),
                  _read(cert, TLS_CERT_ENV, "client certificate"),
                  _read(key, TLS_KEY_ENV, "client key"))
        if (tls.cert is None) != (tls.key is None):
            raise ValueError(f"a client certificate needs its key and the other way round: "
                             f"give both tls_cert and tls_key (or ${TLS_CERT_ENV} and "
                             f"${TLS_KEY_ENV})")
        return tls

    @property
    def configured(self) -> bool:
        return self.ca is not None or self.cert is not None

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(root_certificates=self.ca, private_key=self.key,
                                            certificate_chain=self.cert)

    def without_key(self) -> ClientTLS:
        """What may be shipped: the CA and certificate are public, the key is not."""
        return ClientTLS(self.ca, None, None)
