"""The one rule for a journal that does not exist, in every command that reads one (status,
dashboard, export): an error naming the journals the namespace has, never an empty answer
that looks like "no studies yet"."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from optuna_grpc_storage.storage.client import JournalClient

DEFAULT_JOURNAL = "default"


class UnknownJournal(ValueError):
    """A journal named by the user is not in their namespace."""


def require_journals(client: JournalClient, names: Sequence[str]) -> list[Any]:
    """The journals `names` of the caller's namespace (ListJournals' entries, in that order);
    UnknownJournal naming the missing ones and those that exist."""
    listed = {j.name: j for j in client.list_journals()}
    missing = [n for n in names if n not in listed]
    if missing:
        which = ", ".join(repr(n) for n in missing)
        names_there = ", ".join(sorted(listed)) or "none"
        raise UnknownJournal(f"there is no journal {which} in your namespace "
                             f"(journals: {names_there})")
    return [listed[n] for n in names]
