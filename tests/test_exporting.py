"""Export and import of journals: Optuna's JournalFileBackend opens an export as-is, an import
gives back the same entries byte for byte, and nothing is written for a bad file."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from optuna_grpc_storage import GrpcJournalStorage
from optuna_grpc_storage.tools.transfer import (
    TransferRefused,
    append_file,
    export_journal,
    import_journal,
    iter_entries,
    open_journal,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _load_script() -> ModuleType:
    path = Path(__file__).resolve().parent.parent / "scripts" / "measure_import_export.py"
    spec = importlib.util.spec_from_file_location("measure_import_export", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# A journal file as Optuna writes it for n finished trials (3 entries each), made in no time.
synthetic_journal = _load_script().synthetic_journal


def populate(storage: optuna.storages.BaseStorage) -> None:
    """Studies with every kind of entry: states, intermediate values, attributes, two
    objectives, a deleted study, unicode."""
    study = optuna.create_study(study_name="single", storage=storage)
    study.set_user_attr("owner", "équipe-ü ✓")

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", -5, 5)
        trial.suggest_int("n", 1, 9, log=True)
        trial.suggest_categorical("kind", ["a", None, 2.5])
        trial.set_user_attr("note", f"trial {trial.number} ✓")
        trial.report(x, 0)
        if trial.number == 3:
            raise optuna.TrialPruned()
        if trial.number == 4:
            raise RuntimeError("boom")
        return x * x

    study.optimize(objective, n_trials=8, catch=(RuntimeError,))
    study.enqueue_trial({"x": 1.0})
    multi = optuna.create_study(study_name="multi", storage=storage,
                                directions=["maximize", "minimize"])
    multi.optimize(lambda t: (t.suggest_float("a", 0, 1), t.suggest_float("b", 0, 1)),
                   n_trials=5)
    gone = optuna.create_study(study_name="gone", storage=storage)
    optuna.delete_study(study_name=gone.study_name, storage=storage)


def same_studies(a: optuna.storages.BaseStorage, b: optuna.storages.BaseStorage) -> None:
    studies_a = sorted(a.get_all_studies(), key=lambda s: s.study_name)
    studies_b = sorted(b.get_all_studies(), key=lambda s: s.study_name)
    assert [(s.study_name, s.directions, s.user_attrs, s.system_attrs) for s in studies_a] == \
        [(s.study_name, s.directions, s.user_attrs, s.system_attrs) for s in studies_b]
    for sa, sb in zip(studies_a, studies_b, strict=True):
        ta, tb = a.get_all_trials(sa._study_id), b.get_all_trials(sb._study_id)
        assert len(ta) > 0 and ta == tb  # FrozenTrial equality: every field


def test_export_opens_in_journal_file_backend_and_imports_back_exactly(
        make_storage, proxy, token, tmp_path: Path) -> None:
    source = make_storage()
    populate(source)
    path = tmp_path / "journal.log"
    count = export_journal(proxy.endpoint, token, "default", path, progress=False)
    stored = list(iter_entries(open_journal(proxy.endpoint, token, "default")))
    assert count == len(stored) > 30
    assert path.read_bytes() == b"".join(e + b"\n" for e in stored)
    assert not [p for p in tmp_path.iterdir() if p.name != "journal.log"]  # no temp file left
    # Optuna's own file backend opens the export as-is and sees the same studies and trials.
    from_file = JournalStorage(JournalFileBackend(str(path)))
    same_studies(source, from_file)
    states = {t.state for t in from_file.get_all_trials(
        from_file.get_study_id_from_name("single"))}
    assert states == {TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.WAITING}
    # Importing the file gives back the same entries, byte for byte, and the same studies.
    result = import_journal(proxy.endpoint, token, "copy", path, progress=False)
    assert (result.entries, result.appended, result.ignored_last_line) == (count, count, False)
    assert list(iter_entries(open_journal(proxy.endpoint, token, "copy"))) == stored
    same_studies(source, make_storage("copy"))


def test_import_refuses_a_non_empty_journal_unless_asked(make_storage, proxy, token,
                                                         tmp_path: Path) -> None:
    path = tmp_path / "j.log"
    n = synthetic_journal(path, 10)
    optuna.create_study(study_name="mine", storage=make_storage("busy"))
    before = list(iter_entries(open_journal(proxy.endpoint, token, "busy")))
    with pytest.raises(TransferRefused, match=r"already holds 1 entries.*--replace.*--resume"):
        import_journal(proxy.endpoint, token, "busy", path, progress=False)
    assert list(iter_entries(open_journal(proxy.endpoint, token, "busy"))) == before
    with pytest.raises(TransferRefused, match="differs from the file at line 1"):
        import_journal(proxy.endpoint, token, "busy", path, resume=True, progress=False)
    result = import_journal(proxy.endpoint, token, "busy", path, replace=True, progress=False)
    assert result.entries == result.appended == n
    studies = make_storage("busy").get_all_studies()
    assert [s.study_name for s in studies] == ["nfs"]


def test_an_interrupted_multi_batch_import_resumes(proxy, token, tmp_path: Path) -> None:
    """25k entries: 25 batches at the proxy's 1,000-entry limit, a progress bar, a snapshot. An
    interruption leaves a prefix of whole batches, which --resume checks and completes."""
    path, prefix = tmp_path / "big.log", tmp_path / "prefix.log"
    n = synthetic_journal(path, 8_333)
    assert n == 25_000
    with open(path, "rb") as f:
        prefix.write_bytes(b"".join(next(f) for _ in range(10_000)))
    import_journal(proxy.endpoint, token, "big", prefix, progress=False)  # "interrupted"
    result = import_journal(proxy.endpoint, token, "big", path, resume=True, progress=False)
    assert (result.entries, result.appended, result.snapshot) == (n, n - 10_000, True)
    backend = open_journal(proxy.endpoint, token, "big")
    assert b"".join(e + b"\n" for e in iter_entries(backend)) == path.read_bytes()
    info = {j.name: j for j in backend.client.list_journals()}["big"]
    assert info.length == n and info.snapshot_position == n  # new processes skip the replay
    study = optuna.load_study(study_name="nfs", storage=GrpcJournalStorage(
        proxy.endpoint, token, "big"))
    assert len(study.trials) == 8_333 and study.best_value == 0.0
    again = import_journal(proxy.endpoint, token, "big", path, resume=True, progress=False)
    assert again.appended == 0  # nothing left to do


def test_a_malformed_file_is_refused_whole_naming_the_line(proxy, token, tmp_path: Path) -> None:
    path = tmp_path / "bad.log"
    synthetic_journal(path, 4_000)  # 12,001 entries: more than one batch
    lines = path.read_bytes().splitlines(keepends=True)
    assert b"\"op_code\":6" in lines[11_001]  # a SET_TRIAL_STATE_VALUES, line 11002
    lines[11_001] = lines[11_001].replace(b'"state":1', b'"state":"done"')
    path.write_bytes(b"".join(lines))
    with pytest.raises(TransferRefused, match=r"bad.log, line 11002: .*'state' must be an "
                                            r"integer; nothing was imported"):
        import_journal(proxy.endpoint, token, "bad", path, progress=False)
    backend = open_journal(proxy.endpoint, token, "bad")
    assert "bad" not in {j.name for j in backend.client.list_journals()}
    # The proxy refuses it too (its check is the authority); the line is named from its answer.
    with pytest.raises(TransferRefused, match=r"line 11002: .*'state' must be an integer; the "
                                            r"journal holds the file's first 11000 entries"):
        append_file(backend, path, backend.client.limits(), 0, 12_001, progress=False)
    assert {j.name: j.length for j in backend.client.list_journals()}["bad"] == 11_000
    not_json = tmp_path / "notjson.log"
    not_json.write_bytes(lines[0] + b"\n" + lines[1])  # a blank line, as Optuna would refuse
    with pytest.raises(TransferRefused, match=r"line 2: the entry is not UTF-8 JSON"):
        import_journal(proxy.endpoint, token, "bad2", not_json, progress=False)


def test_a_concurrent_writer_stops_the_import(make_storage, proxy, token,
                                              tmp_path: Path) -> None:
    path = tmp_path / "j.log"
    synthetic_journal(path, 5)
    optuna.create_study(study_name="intruder", storage=make_storage("shared"))
    backend = open_journal(proxy.endpoint, token, "shared")
    with pytest.raises(TransferRefused, match=r"someone else wrote to journal 'shared' during the "
                                            r"import .*position 1, not 0"):
        append_file(backend, path, backend.client.limits(), 0, 16, progress=False)


def test_a_last_line_without_newline_is_ignored_as_optuna_does(proxy, token,
                                                               tmp_path: Path) -> None:
    path = tmp_path / "partial.log"
    n = synthetic_journal(path, 3)
    with open(path, "ab") as f:
        f.write(b'{"op_code":4,"worker_id":"w","study_id":0,"datetime_start":nul')
    assert len(JournalStorage(JournalFileBackend(str(path))).get_all_trials(0)) == 3
    result = import_journal(proxy.endpoint, token, "partial", path, progress=False)
    assert (result.entries, result.ignored_last_line) == (n, True)


def test_the_commands(make_storage, proxy, token, tmp_path: Path) -> None:
    optuna.create_study(study_name="s", storage=make_storage()).optimize(
        lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    env = {**os.environ, "OPTUNA_GRPC_STORAGE_ENDPOINT": proxy.endpoint,
           "OPTUNA_GRPC_STORAGE_TOKEN": token}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "optuna_grpc_storage.tools.cli", *args],
                              env=env, capture_output=True, text=True, timeout=120)

    out = cli("export", str(tmp_path / "s.log"))
    assert out.returncode == 0 and "exported 10 entries of journal 'default'" in out.stderr
    assert "100%" in out.stderr  # the progress bar
    assert len(JournalStorage(JournalFileBackend(str(tmp_path / "s.log"))).get_all_trials(0)) \
        == 3
    out = cli("import", str(tmp_path / "s.log"))
    assert out.returncode == 1 and "already holds 10 entries" in out.stderr
    out = cli("import", str(tmp_path / "s.log"), "--journal", "copy", "--quiet")
    assert out.returncode == 0 and out.stderr.strip() == \
        "imported 10 entries into journal 'copy'"
    out = cli("journals", "--json")
    assert {j["name"]: j["entries"] for j in json.loads(out.stdout)} == \
        {"default": 10, "copy": 10}
    out = cli("export", "-", "--journal", "copy", "--quiet")
    assert out.stdout.encode() == (tmp_path / "s.log").read_bytes()
    out = cli("export", str(tmp_path / "x.log"), "--journal", "nope")
    assert out.returncode == 1 and "no journal 'nope'" in out.stderr and token not in out.stderr
    assert cli("delete-journal", "copy").returncode == 2
    assert cli("delete-journal", "copy", "--yes").returncode == 0
    assert "copy" not in cli("journals").stdout


def test_names_and_sizes_are_checked_before_anything_is_sent(proxy, token,
                                                              tmp_path: Path) -> None:
    path = tmp_path / "huge.log"
    synthetic_journal(path, 2)
    with open(path, "ab") as f:
        f.write(json.dumps({"op_code": 2, "worker_id": "w", "study_id": 0,
                            "user_attr": {"blob": "x" * (2 << 20)}}).encode() + b"\n")
    with pytest.raises(TransferRefused, match=r"huge.log, line 8: the entry is 2097\d+ bytes; "
                                              r"the proxy's limit is 1048576"):
        import_journal(proxy.endpoint, token, "huge", path, progress=False)
    with pytest.raises(TransferRefused, match="invalid journal name 'a/b'"):
        import_journal(proxy.endpoint, token, "a/b", path, progress=False)
    with pytest.raises(TransferRefused, match="invalid journal name"):
        export_journal(proxy.endpoint, token, "{x}", tmp_path / "out.log", progress=False)
    assert not (tmp_path / "out.log").exists()


def test_a_journal_written_again_after_another_process_deleted_it_is_listed(
        redis_server, proxy, token, tmp_path: Path) -> None:
    """Each server process remembered which journals it had "already registered": after
    another process deleted a journal, writes through the first one no longer put it back in
    the namespace's index, so ListJournals left it out and export said it did not exist."""
    from storage_proxy.testing import ProxyProcess

    with ProxyProcess(redis_server.url, data_dir=tmp_path / "other") as other:
        here = GrpcJournalStorage(proxy.endpoint, token=token, journal="again")
        there = GrpcJournalStorage(other.endpoint, token=token, journal="again")
        optuna.create_study(study_name="first", storage=here)
        assert there.grpc_backend.delete_journal()
        optuna.create_study(study_name="second", storage=GrpcJournalStorage(
            proxy.endpoint, token=token, journal="again"))
        for storage in (here, there):
            listed = [j.name for j in storage.grpc_backend.client.list_journals()]
            assert listed == ["again"]
        assert export_journal(proxy.endpoint, token, "again", tmp_path / "again.log",
                              progress=False) == 1
