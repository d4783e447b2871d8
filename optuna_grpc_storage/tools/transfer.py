"""Move journals between the proxy and JSON-lines files that Optuna's JournalFileBackend opens.

An export writes every entry of a journal, as stored, one per line: the file *is* the journal,
so `JournalStorage(JournalFileBackend(path))` opens it as-is, and importing it gives back the
same entries, byte for byte. A journal file from a team that ran on NFS imports the same way.

Entries refer to studies and trials by their position in the journal (the n-th CREATE_STUDY is
study n), so a file can only be replayed from the start of a journal: an import goes into an
empty journal, or replaces one (`replace=True`), or finishes an interrupted import of the same
file (`resume=True`). It never appends a file after someone else's entries.

An import checks the whole file first, with the proxy's own entry checks, and writes nothing if
one line is bad (the error names the line). It then appends in batches within the proxy's
limits. Each batch is all-or-nothing and carries an idempotency key, so a batch retried after
a timeout lands once, and the journal always holds a prefix of the file: an interrupted import
is finished with `resume=True` (which checks that prefix entry by entry) or undone with
`replace=True` or `delete-journal`. A file that fits in one batch (1,000 entries / 1 MiB by
default) is imported in one atomic append; a larger one becomes visible batch by batch, so
import it into a journal no worker uses yet.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tqdm.auto import tqdm

from optuna_grpc_storage.protocol.entries import check_entries
from optuna_grpc_storage.protocol.errors import RequestError, too_large
from optuna_grpc_storage.protocol.limits import Limits
from optuna_grpc_storage.protocol.names import check_journal
from optuna_grpc_storage.protocol.v1 import journal_pb2 as pb
from optuna_grpc_storage.storage import GrpcJournalStorage
from optuna_grpc_storage.storage.client import JournalClient
from optuna_grpc_storage.storage.connection import Connection
from optuna_grpc_storage.storage.errors import RequestRejectedError
from optuna_grpc_storage.storage.snapshots import FIRST_SNAPSHOT_AT
from optuna_grpc_storage.tools.journals import require_journals

READ_PAGE_ENTRIES = 10_000  # one ReadLogs call; a broken stream re-reads at most this much
_ENTRY_INDEX = re.compile(r"\bentry (\d+)\b")


class TransferRefused(Exception):
    """An export or import cannot start or go on; the message says why, and for an import
    what the journal holds now."""


@dataclass(frozen=True)
class ImportResult:
    journal: str
    entries: int  # entries of the file (what Optuna's JournalFileBackend reads)
    appended: int  # of which this call appended (the rest were there: resume)
    snapshot: bool  # a snapshot was saved after the import
    ignored_last_line: bool  # a last line without newline, which Optuna ignores too


@dataclass
class Journal:
    """One journal of the namespace, and the client that reaches it."""

    client: JournalClient
    name: str

    def close(self) -> None:
        self.client.close()


def open_journal(endpoint: str | None, token: str | None, journal: str) -> Journal:
    """A client on `journal`, whose name is checked first as the proxy checks it."""
    try:
        check_journal(journal)
    except RequestError as e:
        raise TransferRefused(e.message) from None
    return Journal(JournalClient(Connection(endpoint, token), use_stream=False), journal)


def journal_length(journal: Journal) -> int | None:
    """Entries in the journal, None if it does not exist."""
    for info in journal.client.list_journals():
        if info.name == journal.name:
            return int(info.length)
    return None


def read_page(journal: Journal, position: int,
              max_entries: int = READ_PAGE_ENTRIES) -> tuple[list[bytes], int]:
    """Up to `max_entries` stored entries from `position`, and the journal's length then."""
    entries: list[bytes] = []
    length = [position]

    def take(chunk: pb.LogChunk) -> None:
        entries.extend(chunk.entries)
        length[0] = chunk.journal_length

    journal.client.read(journal.name, position, take, max_entries)
    return entries, length[0]


def iter_entries(journal: Journal, position: int = 0,
                 stop: int | None = None) -> Iterator[bytes]:
    """Stored entries from `position` to `stop` (default: the end when the first page was
    read), page by page, so memory stays bounded whatever the journal's size."""
    while stop is None or position < stop:
        page, length = read_page(journal, position,
                                 READ_PAGE_ENTRIES if stop is None
                                 else min(READ_PAGE_ENTRIES, stop - position))
        stop = length if stop is None else stop
        if not page:
            return
        yield from page
        position += len(page)


# -- export -------------------------------------------------------------------------------


def export_journal(endpoint: str | None, token: str | None, journal: str,
                   destination: str | os.PathLike[str] | IO[bytes], *,
                   progress: bool = True) -> int:
    """Write the journal, as it is when the export starts, to `destination` (a path, or a
    binary stream such as sys.stdout.buffer); returns the number of entries. A path is written
    to a temporary file beside it and renamed at the end, so it is never left half-written."""
    source = open_journal(endpoint, token, journal)
    try:
        (info,) = require_journals(source.client, [journal])
        length = int(info.length)
        if not isinstance(destination, (str, os.PathLike)):
            return _write(source, length, destination, progress)
        path = Path(destination)
        try:  # beside the file, so the rename is atomic; an error names the user's path
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or ".")
        except OSError as e:
            raise TransferRefused(f"cannot write {os.fspath(path)}: {e.strerror} (in "
                                  f"{os.fspath(path.parent or '.')})") from None
        try:
            with os.fdopen(fd, "wb") as out:
                count = _write(source, length, out, progress)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return count
    finally:
        source.close()


def _write(journal: Journal, length: int, out: IO[bytes], progress: bool) -> int:
    count = 0
    with tqdm(total=length, unit="entry", desc=f"export {journal.name}",
              disable=not progress, file=sys.stderr) as bar:
        for entry in iter_entries(journal, 0, length):
            if b"\n" in entry or b"\r" in entry:  # stored before the proxy made them one line
                entry = entry.replace(b"\n", b"").replace(b"\r", b"")
            out.write(entry + b"\n")
            count += 1
            if count % 1000 == 0:
                bar.update(1000)
        bar.update(count % 1000)
    out.flush()
    return count


# -- import -------------------------------------------------------------------------------


def file_entries(path: str | os.PathLike[str]) -> Iterator[tuple[int, bytes | None]]:
    """(line number, entry) for each line, as Optuna's JournalFileBackend reads the file:
    lines end with a newline; a last line without one is a write in progress, which Optuna
    ignores (it is yielded as (line, None)). \\r and \\n are dropped as the proxy drops them."""
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            if not line.endswith(b"\n"):
                yield number, None
                return
            yield number, line[:-1].replace(b"\r", b"")


def _batches(path: str | os.PathLike[str], limits: Limits,
             skip: int = 0) -> Iterator[tuple[int, list[bytes]]]:
    """(line number of the first entry, entries) in batches within the proxy's limits."""
    batch: list[bytes] = []
    first, size = 0, 0
    for number, entry in file_entries(path):
        if entry is None:
            break
        if skip:
            skip -= 1
            continue
        if batch and (len(batch) >= limits.max_batch_entries
                      or size + len(entry) > limits.max_batch_bytes):
            yield first, batch
            batch, size = [], 0
        if not batch:
            first = number
        batch.append(entry)
        size += len(entry)
    if batch:
        yield first, batch


def _bad_line(first_line: int, message: str) -> str:
    """'entry 3 ...' in a batch starting at line 120 -> 'line 123: ...'."""
    found = _ENTRY_INDEX.search(message)
    if found is None:
        return message
    line = first_line + int(found.group(1))
    return f"line {line}: {_ENTRY_INDEX.sub('the entry', message, count=1)}"


def check_file(path: str | os.PathLike[str], limits: Limits,
               progress: bool = True) -> tuple[int, bool]:
    """Check every line with the proxy's own checks; (entries, last line ignored).
    TransferRefused naming the first bad line."""
    entries, ignored = 0, False
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise TransferRefused(f"cannot read {os.fspath(path)}: {e.strerror}") from None
    with tqdm(total=size, unit="B", unit_scale=True, desc="check",
              disable=not progress, file=sys.stderr) as bar:
        for first_line, batch in _batches(path, limits):
            try:
                for i, entry in enumerate(batch):  # before the batch's total is checked
                    if len(entry) > limits.max_entry_bytes:
                        raise too_large(f"entry {i} is {len(entry)} bytes; the proxy's limit "
                                        f"is {limits.max_entry_bytes}")
                check_entries(batch, limits)
            except RequestError as e:
                raise TransferRefused(f"{os.fspath(path)}, {_bad_line(first_line, e.message)}; "
                                    "nothing was imported") from None
            entries += len(batch)
            bar.update(sum(len(e) + 1 for e in batch))
    with open(path, "rb") as f:
        if f.seek(0, os.SEEK_END):
            f.seek(-1, os.SEEK_END)
            ignored = f.read(1) != b"\n"
    return entries, ignored


def import_journal(endpoint: str | None, token: str | None, journal: str,
                   path: str | os.PathLike[str], *, replace: bool = False, resume: bool = False,
                   snapshot: bool = True, progress: bool = True) -> ImportResult:
    """Import a JSON-lines journal file into `journal` (see the module docstring)."""
    if replace and resume:
        raise ValueError("pass replace or resume, not both")
    target = open_journal(endpoint, token, journal)
    try:
        limits = target.client.limits()
        total, ignored = check_file(path, limits, progress)
        present = journal_length(target) or 0
        if present and replace:
            target.client.delete_journal(journal)
            present = 0
        if present and not resume:
            raise TransferRefused(
                f"journal {journal!r} already holds {present} entries: import into a new "
                "journal name, or pass --replace to delete it first, or --resume if it holds "
                "an interrupted import of this same file")
        if present:
            _check_prefix(target, path, present, total)
        appended = append_file(target, path, limits, present, total, progress)
        snapshotted = False
        if snapshot and total >= FIRST_SNAPSHOT_AT:
            # New processes then load the state instead of replaying the whole import.
            storage = GrpcJournalStorage(endpoint, token, journal)
            snapshotted = storage.take_snapshot()
            storage.grpc_backend.client.close()
        return ImportResult(journal, total, appended, snapshotted, ignored)
    finally:
        target.close()


def _check_prefix(journal: Journal, path: str | os.PathLike[str], present: int,
                  total: int) -> None:
    """--resume: the journal must hold the first `present` entries of the file, exactly."""
    if present > total:
        raise TransferRefused(f"journal {journal.name!r} holds {present} entries but the file "
                            f"only {total}: it is not an interrupted import of this file")
    stored = iter_entries(journal, 0, present)
    for (number, entry), held in zip(file_entries(path), stored, strict=False):
        if entry != held:
            raise TransferRefused(
                f"journal {journal.name!r} differs from the file at line {number}: it is "
                "not an interrupted import of this file (use --replace to start over)")


def append_file(journal: Journal, path: str | os.PathLike[str], limits: Limits,
                position: int, total: int, progress: bool) -> int:
    """Append the file from entry `position` on; returns how many entries were appended."""
    start, client_id = position, uuid.uuid4().hex
    with tqdm(total=total, initial=position, unit="entry",
              desc=f"import {journal.name}", disable=not progress, file=sys.stderr) as bar:
        for sequence, (first_line, batch) in enumerate(_batches(path, limits, position), 1):
            request = pb.AppendLogsRequest(journal=journal.name, entries=batch,
                                           client_id=client_id, sequence=sequence,
                                           known_position=position)
            try:
                response = journal.client.append(request)
            except RequestRejectedError as e:
                fix = "fix the line" if _ENTRY_INDEX.search(str(e)) else "fix that"
                raise TransferRefused(
                    f"{os.fspath(path)}, {_bad_line(first_line, str(e))}; the journal holds "
                    f"the file's first {position} entries: {fix} and run the import again "
                    "with --resume") from None
            if not response.duplicate and response.first_position != position:
                raise TransferRefused(
                    f"someone else wrote to journal {journal.name!r} during the import (this "
                    f"batch landed at position {response.first_position}, not {position}): "
                    "its studies are now mixed up; start over with --replace, into a journal "
                    "no worker uses")
            position += len(batch)
            bar.update(len(batch))
    return position - start
