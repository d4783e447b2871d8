"""Certificates made by the tests (the `cryptography` package): a CA, a server certificate for
localhost and 127.0.0.1, client certificates; written as PEM files."""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass
class Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    def write(self, directory: Path, name: str) -> tuple[Path, Path]:
        """(cert file, key file), replaced in one rename each as cert-manager does."""
        directory.mkdir(parents=True, exist_ok=True)
        out = []
        for suffix, data in (("crt", self.cert_pem), ("key", self.key_pem)):
            path = directory / f"{name}.{suffix}"
            tmp = directory / f".{name}.{suffix}.tmp"
            tmp.write_bytes(data)
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
            out.append(path)
        return out[0], out[1]


def issue(common_name: str, ca: Issued | None = None, *, server: bool = False,
          client: bool = False) -> Issued:
    """A CA (ca=None) or a certificate signed by `ca`, valid for a day."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(name)
               .issuer_name(ca.cert.subject if ca else name).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca is None, path_length=None),
                              critical=True))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
    usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + \
        ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    cert = builder.sign(ca.key if ca else key, hashes.SHA256())
    return Issued(cert, key)


@dataclass
class PKI:
    """A CA, the server's certificate files, a client certificate, all in `directory`."""

    directory: Path
    ca: Issued
    server: Issued
    client: Issued

    @classmethod
    def make(cls, directory: Path, name: str = "test-ca") -> PKI:
        ca = issue(name)
        pki = cls(directory, ca, issue("storage-proxy", ca, server=True),
                  issue("alice", ca, client=True))
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "ca.crt").write_bytes(ca.cert_pem)
        pki.server.write(directory, "server")
        pki.client.write(directory, "client")
        return pki

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.crt"

    def file(self, name: str) -> str:
        return str(self.directory / name)

    def server_args(self, mtls: bool = False) -> tuple[str, ...]:
        args = ("--tls-cert", self.file("server.crt"), "--tls-key", self.file("server.key"))
        return args + (("--tls-client-ca", str(self.ca_file)) if mtls else ())
