"""`export --with-artifacts` / `import --with-artifacts`: a journal's artifacts travel with it,
so a study moves between clusters whole.

Beside the journal file `F`, the directory `F.artifacts/` holds one file per artifact, named
by its id, and `index.jsonl`: one JSON line per artifact (id, size, sha256, labels), written
last, so a directory without it is an export that did not finish. The artifacts of a journal
are those its entries record (Optuna's `artifacts:<id>` attributes of trials and studies,
with the trials' outputs) and those labelled with the journal on the proxy. Each moves
streamed, one at a time; an import uploads them under the same ids (replacing any of that id
in the target namespace), labelled with the target journal.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from optuna.artifacts.exceptions import ArtifactNotFound

from optuna_grpc_storage.protocol.names import check_artifact_id
from optuna_grpc_storage.storage import GrpcArtifactStore
from optuna_grpc_storage.storage.artifacts import CHUNK_BYTES
from optuna_grpc_storage.tools.transfer import TransferRefused, file_entries

INDEX = "index.jsonl"
PREFIX = "artifacts:"


def artifacts_dir(journal_file: str | os.PathLike[str]) -> Path:
    path = Path(journal_file)
    return path.with_name(path.name + ".artifacts")


def recorded_ids(journal_file: str | os.PathLike[str]) -> set[str]:
    """The artifact ids a journal file's entries record (system attributes `artifacts:<id>`)."""
    found: set[str] = set()
    for _, entry in file_entries(journal_file):
        if entry is None or PREFIX.encode() not in entry:
            continue
        attrs = json.loads(entry).get("system_attr")
        if isinstance(attrs, dict):
            found.update(k[len(PREFIX):] for k in attrs if k.startswith(PREFIX))
    return found


def export_artifacts(store: GrpcArtifactStore, journal: str,
                     journal_file: str | os.PathLike[str]) -> int:
    """Download the journal's artifacts beside its exported file; how many. Artifacts the
    journal records but the proxy no longer has (removed by top_n_artifacts) are skipped."""
    folder = artifacts_dir(journal_file)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    labelled = {i.artifact_id: i for i in store.list(journal=journal)}
    lines = []
    for artifact_id in sorted(recorded_ids(journal_file) | set(labelled)):
        try:
            digest, size = _download(store, artifact_id, folder / check_artifact_id(artifact_id))
        except ArtifactNotFound:
            continue
        info = labelled.get(artifact_id)
        lines.append(json.dumps({
            "artifact_id": artifact_id, "size": size, "sha256": digest,
            "study": info.study if info else "",
            "trial_number": info.trial_number if info and info.HasField("trial_number")
            else None}))
    (folder / INDEX).write_text("".join(line + "\n" for line in lines))
    return len(lines)


def _download(store: GrpcArtifactStore, artifact_id: str, path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with store.open_reader(artifact_id) as reader, open(path, "wb") as out:
        while data := reader.read(CHUNK_BYTES):
            digest.update(data)
            size += len(data)
            out.write(data)
    return digest.hexdigest(), size


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while data := f.read(CHUNK_BYTES):
            digest.update(data)
    return digest.hexdigest()


def index_of(journal_file: str | os.PathLike[str]) -> Iterator[dict]:
    folder = artifacts_dir(journal_file)
    index = folder / INDEX
    if not index.exists():
        raise TransferRefused(f"{folder} has no {INDEX}: export the journal again with "
                              "--with-artifacts (an export that did not finish lacks it)")
    for line in index.read_text().splitlines():
        if line.strip():
            yield json.loads(line)


def check_export(journal_file: str | os.PathLike[str]) -> list[dict]:
    """The index of the artifacts exported beside the file, every file checked against it
    (TransferRefused naming the first that differs): the import checks before it writes."""
    folder, entries = artifacts_dir(journal_file), list(index_of(journal_file))
    for entry in entries:
        path = folder / check_artifact_id(entry["artifact_id"])
        if not path.exists() or _sha256(path) != entry["sha256"]:
            raise TransferRefused(f"{path}: missing, or not the content {INDEX} records "
                                  "(its SHA-256 differs); nothing was imported")
    return entries


def import_artifacts(store: GrpcArtifactStore, journal: str,
                     journal_file: str | os.PathLike[str]) -> int:
    """Upload the artifacts exported beside the file, labelled with `journal`; how many."""
    folder, entries = artifacts_dir(journal_file), check_export(journal_file)
    for entry in entries:
        labelled = store.labelled(journal=journal, study=entry.get("study") or "",
                                  trial_number=entry.get("trial_number"))
        with open(folder / entry["artifact_id"], "rb") as f:
            labelled.write(entry["artifact_id"], f)
    return len(entries)
