"""What one namespace may hold: the operator's quota, to/from its protobuf form (WhoAmI), and
sizes as people write them ("2GiB")."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from optuna_grpc_storage.protocol.v1 import journal_pb2 as pb

_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9,
          "gb": 10**9, "t": 10**12, "tb": 10**12, "kib": 1 << 10, "mib": 1 << 20,
          "gib": 1 << 30, "tib": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


DEFAULT_ARTIFACT_BYTES = 10 << 30  # without a quota set: what one namespace's artifacts hold
DEFAULT_ARTIFACTS = 100_000
DEFAULT_ARTIFACT_SIZE = 5 << 30


@dataclass(frozen=True)
class QuotaLimits:
    """The most one namespace may hold: bytes stored (entries, snapshots and heartbeats as the
    proxy counts them), journals, and the size of one snapshot and of one entry; and apart
    (their bytes rest in the artifact store, not in Redis) its artifacts' bytes, their number
    and the size of one."""

    bytes: int
    journals: int
    snapshot_bytes: int
    entry_bytes: int
    artifact_bytes: int = DEFAULT_ARTIFACT_BYTES
    artifacts: int = DEFAULT_ARTIFACTS
    artifact_size: int = DEFAULT_ARTIFACT_SIZE

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]


@dataclass(frozen=True)
class QuotaStatus:
    """A namespace's limits and what it holds now."""

    limits: QuotaLimits
    bytes_used: int  # reserved by its journals: at least what they hold
    journals: int
    artifact_bytes_used: int = 0  # stored artifacts and uploads in progress
    artifacts: int = 0

    def to_proto(self) -> pb.Quota:
        lim = self.limits
        return pb.Quota(max_bytes=lim.bytes, max_journals=lim.journals,
                        max_snapshot_bytes=lim.snapshot_bytes, max_entry_bytes=lim.entry_bytes,
                        bytes_used=self.bytes_used, journals=self.journals,
                        max_artifact_bytes=lim.artifact_bytes, max_artifacts=lim.artifacts,
                        max_artifact_size=lim.artifact_size,
                        artifact_bytes_used=self.artifact_bytes_used, artifacts=self.artifacts)

    @classmethod
    def from_proto(cls, message: pb.Quota) -> QuotaStatus | None:
        """None when the proxy announced no quota (an older proxy)."""
        if not message.max_bytes:
            return None
        artifact_limits = {}
        if message.max_artifact_bytes:  # announced by proxies that serve artifacts
            artifact_limits = {"artifact_bytes": message.max_artifact_bytes,
                               "artifacts": message.max_artifacts,
                               "artifact_size": message.max_artifact_size}
        limits = QuotaLimits(message.max_bytes, message.max_journals,
                             message.max_snapshot_bytes, message.max_entry_bytes,
                             **artifact_limits)
        return cls(limits, message.bytes_used, message.journals, message.artifact_bytes_used,
                   message.artifacts)


def parse_bytes(text: str | int) -> int:
    """'2GiB', '512MiB', '1.5GB', '64k' or a plain number of bytes."""
    if isinstance(text, int):
        return text
    found = _SIZE.match(text)
    unit = found and _UNITS.get(found.group(2).lower())
    if not found or unit is None:
        raise ValueError(f"{text!r} is not a size: write bytes, or a number with a unit "
                         "(KiB, MiB, GiB, TiB or kB, MB, GB, TB), e.g. 2GiB")
    return int(float(found.group(1)) * unit)


def format_bytes(n: int) -> str:
    """Bytes as a person reads them: '1.5 GiB', '512.0 KiB', '300 B'."""
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"
