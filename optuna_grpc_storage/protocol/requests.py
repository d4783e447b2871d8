"""The fields of a request other than names and entries: positions, idempotency keys, ids."""

from __future__ import annotations

from collections.abc import Sequence

from optuna_grpc_storage.protocol.errors import invalid, too_large

# Redis' Lua holds numbers as doubles and prints them with 14 significant digits: sequences
# up to this value round-trip exactly through the idempotency record.
MAX_SEQUENCE = 10**14 - 1
MAX_CLIENT_ID = 128
MAX_TRIAL_IDS = 10_000  # per heartbeat call: one HGET each inside one script


def check_position(value: int, what: str = "position") -> int:
    if value < 0:
        raise invalid(f"{what} must be >= 0, got {value}")
    return value


def check_idempotency_key(client_id: str, sequence: int) -> None:
    if len(client_id) > MAX_CLIENT_ID:
        raise invalid(f"client_id is longer than {MAX_CLIENT_ID} characters")
    if sequence > MAX_SEQUENCE:
        raise invalid(f"sequence {sequence} is above {MAX_SEQUENCE}: number appends "
                      "1, 2, 3... (the store keeps sequences exactly up to 14 digits)")


def check_trial_ids(ids: Sequence[int]) -> list[int]:
    if not ids:
        raise invalid("trial_ids is empty")
    if len(ids) > MAX_TRIAL_IDS:
        raise too_large(f"at most {MAX_TRIAL_IDS} trial_ids per call")
    if min(ids) < 0:
        raise invalid("trial ids must be >= 0")
    return list(ids)
