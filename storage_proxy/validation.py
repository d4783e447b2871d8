"""Checks on everything a client sends, applied before anything touches Redis."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from storage_proxy.entry_fields import check_fields
from storage_proxy.errors import invalid, too_large

# User names end up in DNS names ({user}.<proxy host>) and Redis hash tags: a DNS label.
USER_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
# Journal names: no slashes, braces, whitespace or unicode; they become part of Redis keys.
JOURNAL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# Optuna's JournalOperation codes (CREATE_STUDY .. DISCARD_TRIALS).
VALID_OP_CODES = frozenset(range(11))


@dataclass(frozen=True)
class Limits:
    max_entry_bytes: int = 1 << 20
    max_batch_entries: int = 10_000
    max_batch_bytes: int = 16 << 20
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


def check_user(name: str) -> str:
    if not USER_RE.match(name):
        raise invalid(
            f"invalid user name {name[:80]!r}: use 1-63 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return name


def check_journal(name: str) -> str:
    if not JOURNAL_RE.fullmatch(name):
        shown = name[:80] + ("..." if len(name) > 80 else "")
        raise invalid(
            f"invalid journal name {shown!r}: use 1-128 characters from A-Z a-z 0-9 . _ -, "
            "starting with a letter or digit"
        )
    return name


def check_position(value: int, what: str = "position") -> int:
    if value < 0:
        raise invalid(f"{what} must be >= 0, got {value}")
    return value


def check_entries(entries: Sequence[bytes], limits: Limits) -> list[bytes]:
    """Validate a batch and return it normalised to single-line JSON (as Optuna writes it).

    The whole batch is refused on the first bad entry, so nothing of it is ever written.
    """
    if not entries:
        raise invalid("empty batch: AppendLogs needs at least one entry")
    if len(entries) > limits.max_batch_entries:
        raise too_large(
            f"batch has {len(entries)} entries; the limit is {limits.max_batch_entries} "
            "(--max-batch-entries): split it into smaller appends"
        )
    total = sum(len(e) for e in entries)
    if total > limits.max_batch_bytes:
        raise too_large(
            f"batch is {total} bytes; the limit is {limits.max_batch_bytes} bytes "
            "(--max-batch-bytes): split it into smaller appends"
        )
    out = []
    for i, raw in enumerate(entries):
        if len(raw) > limits.max_entry_bytes:
            raise too_large(
                f"entry {i} is {len(raw)} bytes; the limit is {limits.max_entry_bytes} bytes "
                "(--max-entry-bytes)"
            )
        try:
            entry = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise invalid(f"entry {i} is not UTF-8 JSON: {e}") from None
        if not isinstance(entry, dict):
            raise invalid(f"entry {i} is a JSON {type(entry).__name__}, not an object")
        op = entry.get("op_code")
        if type(op) is not int or op not in VALID_OP_CODES:
            raise invalid(
                f"entry {i} has op_code {op!r}: it must be an integer "
                f"{min(VALID_OP_CODES)}..{max(VALID_OP_CODES)} (Optuna's JournalOperation)"
            )
        check_fields(entry, i)
        # Newlines in valid JSON can only be whitespace between tokens: dropping them keeps the
        # meaning and makes every stored entry one line (JSON-lines export, pub/sub framing).
        if b"\n" in raw or b"\r" in raw:
            raw = raw.replace(b"\n", b"").replace(b"\r", b"")
        out.append(raw)
    return out
