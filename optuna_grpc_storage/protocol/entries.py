"""What a journal entry must be, checked before it is written.

Every client replays every entry, so one entry that Optuna's replay cannot read (not JSON, a
missing field, a wrong type, an unknown distribution) would break the study for everyone. An
entry is a JSON object with one of Optuna's JournalOperation codes and the fields
`JournalStorageReplayResult.apply_logs` reads, with the types it needs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from optuna_grpc_storage.protocol.distributions import (
    DistributionError,
    check_value,
    parse_distribution,
)
from optuna_grpc_storage.protocol.errors import invalid, too_large
from optuna_grpc_storage.protocol.limits import Limits

STUDY_DIRECTIONS = {0, 1, 2}  # StudyDirection
TRIAL_STATES = {0, 1, 2, 3, 4}  # TrialState: RUNNING, COMPLETE, PRUNED, FAIL, WAITING
RUNNING, FINISHED = 0, {1, 2, 3}
# Optuna's JournalOperation codes (CREATE_STUDY .. DISCARD_TRIALS).
VALID_OP_CODES = frozenset(range(11))
# Nesting an entry may have. Every client parses a whole read as one JSON array (one level
# more) with Python's recursion limit, less what its own stack already uses: an entry nested
# near that limit would break every reader of the journal.
MAX_DEPTH = 100


class _Problem(Exception):
    pass


def _int(e: dict[str, Any], key: str) -> int:
    v = e.get(key)
    if type(v) is not int:
        raise _Problem(f"'{key}' must be an integer")
    return v


def _number(v: Any, what: str, none_ok: bool = False) -> None:
    if v is None and none_ok:
        return
    if type(v) not in (int, float):
        raise _Problem(f"{what} must be a number")


def _str(e: dict[str, Any], key: str, none_ok: bool = False) -> None:
    v = e.get(key, ...)
    if not (isinstance(v, str) or (none_ok and v is None)):
        raise _Problem(f"'{key}' must be a string" + (" or null" if none_ok else ""))


def _time(e: dict[str, Any], key: str, none_ok: bool = False) -> None:
    _str(e, key, none_ok)
    if e[key] is not None:
        try:
            datetime.fromisoformat(e[key]).astimezone()
        except (ValueError, OverflowError, OSError):
            raise _Problem(f"'{key}' is not an ISO 8601 time") from None


def _one_attr(e: dict[str, Any], key: str) -> None:
    v = e.get(key)
    if not isinstance(v, dict) or len(v) != 1:
        raise _Problem(f"'{key}' must be an object with exactly one key")


def _state(e: dict[str, Any]) -> int:
    state = _int(e, "state")
    if state not in TRIAL_STATES:
        raise _Problem(f"'state' {state} is not a TrialState (0-4)")
    return state


def _values(v: Any) -> None:
    if v is not None:
        if not isinstance(v, list):
            raise _Problem("'values' must be a list of numbers or null")
        for x in v:
            _number(x, "each of 'values'")


def _param(distribution: Any, value: Any, name: str) -> None:
    if not isinstance(distribution, str):
        raise _Problem(f"the distribution of '{name}' must be a JSON string")
    _number(value, f"the internal value of '{name}'")
    try:
        check_value(*parse_distribution(distribution), value)
    except DistributionError as e:
        raise _Problem(f"'{name}' has an unreadable distribution or a value outside it "
                       f"({e})") from None


def _create_study(e: dict[str, Any]) -> None:
    _str(e, "study_name")
    d = e.get("directions")
    if not isinstance(d, list) or not d or any(
            type(x) is not int or x not in STUDY_DIRECTIONS for x in d):
        raise _Problem("'directions' must be a non-empty list of StudyDirection values (0-2)")


def _create_trial(e: dict[str, Any]) -> None:
    _int(e, "study_id")
    _time(e, "datetime_start", none_ok=True)
    if "state" in e:
        _state(e)
    if "datetime_complete" in e:
        _time(e, "datetime_complete")
    _number(e.get("value"), "'value'", none_ok=True)
    _values(e.get("values"))
    if e.get("value") is not None and e.get("values") is not None:
        raise _Problem("give 'value' or 'values', not both")
    distributions = e.get("distributions", {})
    params = e.get("params", {})
    if not isinstance(distributions, dict) or not isinstance(params, dict):
        raise _Problem("'distributions' and 'params' must be objects")
    for name, text in distributions.items():
        try:
            parse_distribution(text)
        except DistributionError as e:
            raise _Problem(f"the distribution of '{name}' is unreadable ({e})") from None
    for name, value in params.items():
        _param(distributions.get(name), value, name)
    for key in ("user_attrs", "system_attrs", "intermediate_values"):
        if not isinstance(e.get(key, {}), dict):
            raise _Problem(f"'{key}' must be an object")
    for step, value in e.get("intermediate_values", {}).items():
        try:
            int(step)
        except ValueError:
            raise _Problem("'intermediate_values' keys must be integer steps") from None
        _number(value, "an intermediate value", none_ok=True)


def _set_trial_param(e: dict[str, Any]) -> None:
    _int(e, "trial_id")
    _str(e, "param_name")
    _param(e.get("distribution"), e.get("param_value_internal"), e["param_name"])


def _set_trial_state_values(e: dict[str, Any]) -> None:
    _int(e, "trial_id")
    state = _state(e)
    if state == RUNNING:
        _time(e, "datetime_start")
    elif state in FINISHED:
        _time(e, "datetime_complete")
    if "values" not in e:
        raise _Problem("'values' is missing")
    _values(e["values"])


def _set_trial_intermediate_value(e: dict[str, Any]) -> None:
    _int(e, "trial_id")
    _int(e, "step")
    _number(e.get("intermediate_value"), "'intermediate_value'", none_ok=True)


CHECKS = {
    0: _create_study,
    1: lambda e: _int(e, "study_id"),
    2: lambda e: (_int(e, "study_id"), _one_attr(e, "user_attr")),
    3: lambda e: (_int(e, "study_id"), _one_attr(e, "system_attr")),
    4: _create_trial,
    5: _set_trial_param,
    6: _set_trial_state_values,
    7: _set_trial_intermediate_value,
    8: lambda e: (_int(e, "trial_id"), _one_attr(e, "user_attr")),
    9: lambda e: (_int(e, "trial_id"), _one_attr(e, "system_attr")),
}


def check_fields(entry: dict[str, Any], index: int) -> None:
    """Raise INVALID_ARGUMENT if Optuna's replay could not apply this entry."""
    check = CHECKS.get(entry["op_code"])
    if check is None:  # DISCARD_TRIALS: Optuna's replay skips it
        return
    try:
        _str(entry, "worker_id")
        check(entry)
    except _Problem as e:
        raise invalid(f"entry {index} (op_code {entry['op_code']}): {e}") from None


def _depth(value: Any) -> int:
    """How deeply containers nest in a parsed value (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            stack.extend((c, level + 1) for c in children if isinstance(c, (dict, list)))
    return deepest


def _parse(raw: bytes, index: int) -> Any:
    """The entry's JSON value; INVALID_ARGUMENT when it is not JSON or nests too deeply."""
    too_deep = invalid(f"entry {index} nests JSON objects or arrays more than {MAX_DEPTH} "
                       "levels deep; flatten it")
    try:
        value = json.loads(raw.decode("utf-8"))
    except RecursionError:  # far deeper than MAX_DEPTH: the parser gave up
        raise too_deep from None
    except (UnicodeDecodeError, ValueError) as e:
        raise invalid(f"entry {index} is not UTF-8 JSON: {e}") from None
    # Brackets in the text bound the depth: only an entry with many of them is walked.
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and _depth(value) > MAX_DEPTH:
        raise too_deep
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
        entry = _parse(raw, i)
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
