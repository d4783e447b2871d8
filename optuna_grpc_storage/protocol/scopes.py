"""What a token may do besides naming its namespace: read only or also write, which journals,
until when. Both sides use it: the proxy decides with it, the client shows it and asks for a
narrower one (`optuna-grpc-storage token share`)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from optuna_grpc_storage.protocol.errors import invalid

# A journal name (protocol/names.py) in which * and ? stand for any characters / one.
PATTERN_RE = re.compile(r"[A-Za-z0-9*?][A-Za-z0-9._*?-]{0,127}")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw]?)")


def check_journal_pattern(pattern: str) -> str:
    if not PATTERN_RE.fullmatch(pattern):
        shown = pattern[:80] + ("..." if len(pattern) > 80 else "")
        raise invalid(f"invalid journal pattern {shown!r}: a journal name (A-Z a-z 0-9 . _ -) "
                      "in which * matches any characters and ? one")
    return pattern


def parse_duration(text: str) -> float:
    """Seconds in '30d', '12h', '90m', '3600s', '2w' (a bare number is seconds)."""
    found = DURATION_RE.fullmatch(text.strip().lower())
    if not found or float(found.group(1)) <= 0:
        raise ValueError(f"invalid duration {text!r}: use a positive number with s, m, h, d "
                         "or w, such as 30d or 12h")
    return float(found.group(1)) * _UNITS[found.group(2) or "s"]


def format_time(epoch: float | None) -> str:
    """A moment for people, in UTC; '-' for none."""
    if epoch is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(epoch))


@dataclass(frozen=True)
class Scope:
    """read_only: no call that writes. journal: a pattern of the journals it may use (None:
    every journal of its namespace). expires: epoch seconds after which it is refused."""

    read_only: bool = False
    journal: str | None = None
    expires: float | None = None

    def may_use(self, journal: str) -> bool:
        return self.journal is None or fnmatchcase(journal, self.journal)

    def expired(self, now: float | None = None) -> bool:
        return self.expires is not None and (time.time() if now is None else now) >= self.expires

    def covers(self, other: Scope) -> bool:
        """Whether `other` grants nothing this scope does not: a token of this scope may mint
        one of `other`'s (a literal journal it may use, or its own pattern)."""
        if other.expires is None and self.expires is not None:
            return False
        if self.expires is not None and other.expires is not None and other.expires > self.expires:
            return False
        if self.read_only and not other.read_only:
            return False
        if self.journal is None or other.journal == self.journal:
            return True
        return other.journal is not None and not set("*?[") & set(other.journal) and \
            self.may_use(other.journal)

    def describe(self) -> str:
        """'read-only, journals cnn-*, until 2026-01-31 10:00:00Z' ('read-write, every
        journal' for a full token)."""
        parts = ["read-only" if self.read_only else "read-write",
                 "every journal" if self.journal is None else f"journals {self.journal}"]
        if self.expires is not None:
            parts.append(f"until {format_time(self.expires)}")
        return ", ".join(parts)

    def to_record(self) -> dict[str, object]:
        return {"read_only": self.read_only, "journal": self.journal, "expires": self.expires}

    @classmethod
    def from_record(cls, record: dict[str, object]) -> Scope:
        expires = record.get("expires")
        journal = record.get("journal")
        return cls(read_only=bool(record.get("read_only", False)),
                   journal=str(journal) if journal else None,
                   expires=float(expires) if isinstance(expires, (int, float)) else None)

    def to_proto(self, message: Any) -> Any:
        """Fill a TokenScope message; returns it."""
        message.read_only = self.read_only
        message.journal_pattern = self.journal or ""
        message.expires_ms = 0 if self.expires is None else int(self.expires * 1000)
        return message

    @classmethod
    def from_proto(cls, message: Any) -> Scope:
        ms = int(message.expires_ms)
        return cls(read_only=bool(message.read_only), journal=message.journal_pattern or None,
                   expires=ms / 1000 if ms else None)


FULL = Scope()  # every journal of the namespace, reads and writes, no expiry (old tokens)
