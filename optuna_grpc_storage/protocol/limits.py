"""What a proxy accepts: set by its flags, announced to clients by WhoAmI."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from optuna_grpc_storage.protocol.v1 import journal_pb2 as pb


@dataclass(frozen=True)
class Limits:
    max_entry_bytes: int = 1 << 20
    # A batch is one Lua call, and what goes through Lua is copied: at 1,000 entries / 1 MiB
    # a full batch holds Redis 2.5-5 ms (6.2) to 5.5-10 ms (Debian's 7.0) on the 2-core
    # development machine (python -m bench --only lua); 10,000 / 16 MiB held it over 20 ms.
    max_batch_entries: int = 1_000
    max_batch_bytes: int = 1 << 20
    max_chunk_bytes: int = 1 << 20
    max_snapshot_bytes: int = 512 << 20
    max_unseen_entries: int = 1_000

    @property
    def max_message_bytes(self) -> int:
        """gRPC message cap: the largest batch or chunk plus room for framing."""
        return max(self.max_batch_bytes, self.max_chunk_bytes, self.max_entry_bytes) + (1 << 20)

    def __post_init__(self) -> None:
        if self.max_chunk_bytes < self.max_entry_bytes:
            raise ValueError("max_chunk_bytes must be at least max_entry_bytes")
        if min(self.max_entry_bytes, self.max_batch_entries, self.max_batch_bytes) <= 0:
            raise ValueError("limits must be positive")

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_values(cls, source: Any) -> Limits:
        """Limits from any object with attributes of the same names (parsed flags)."""
        return cls(**{name: getattr(source, name) for name in cls.names()})

    @classmethod
    def from_proto(cls, message: pb.Limits) -> Limits:
        """The limits a server announced (an old server may announce a chunk size below its
        entry size: never go below the entry size)."""
        values = {name: getattr(message, name) for name in cls.names()}
        values["max_chunk_bytes"] = max(values["max_chunk_bytes"], values["max_entry_bytes"])
        return cls(**values)

    def to_proto(self) -> pb.Limits:
        return pb.Limits(max_message_bytes=self.max_message_bytes,
                         **{name: getattr(self, name) for name in self.names()})
