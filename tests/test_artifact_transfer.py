"""`export --with-artifacts` and `import --with-artifacts`: a study moves to another namespace
(another cluster's proxy, the same way) with its artifacts and trial outputs, byte for byte,
and a damaged export uploads nothing."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import optuna

from optuna_grpc_storage import GrpcArtifactStore, GrpcJournalStorage

optuna.logging.set_verbosity(optuna.logging.WARNING)


def cli(proxy, token: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OPTUNA_GRPC_STORAGE_ENDPOINT": proxy.endpoint,
           "OPTUNA_GRPC_STORAGE_TOKEN": token}
    return subprocess.run([sys.executable, "-m", "optuna_grpc_storage.tools.cli", *args],
                          env=env, capture_output=True, text=True, timeout=120)


def test_a_study_moves_whole(proxy, new_user, tmp_path) -> None:
    _, source_token = new_user()
    _, target_token = new_user()
    study = optuna.create_study(study_name="moving", storage=GrpcJournalStorage(
        proxy.endpoint, source_token, "src"))
    source = GrpcArtifactStore(proxy.endpoint, source_token)
    payloads = {}
    for n in range(3):
        trial = study.ask()
        path = tmp_path / f"ckpt-{n}.bin"
        path.write_bytes(os.urandom(1000 + n * (1 << 20)))
        artifact_id = optuna.artifacts.upload_artifact(
            artifact_store=source.labelled(journal="src", study="moving",
                                           trial_number=trial.number),
            study_or_trial=trial, file_path=str(path))
        payloads[artifact_id] = path.read_bytes()
        study.tell(trial, float(n))
    source.write("unrelated", io.BytesIO(b"another journal's"))  # not exported

    exported = tmp_path / "moving.log"
    out = cli(proxy, source_token, "export", str(exported), "--journal", "src",
              "--with-artifacts", "--quiet")
    assert out.returncode == 0, out.stderr
    assert "exported 3 artifacts" in out.stderr
    assert sorted(os.listdir(tmp_path / "moving.log.artifacts")) == sorted(
        [*payloads, "index.jsonl"])

    out = cli(proxy, target_token, "import", str(exported), "--journal", "dst",
              "--with-artifacts", "--quiet")
    assert out.returncode == 0, out.stderr
    moved = optuna.load_study(study_name="moving", storage=GrpcJournalStorage(
        proxy.endpoint, target_token, "dst"))
    target = GrpcArtifactStore(proxy.endpoint, target_token)
    for trial in moved.trials:
        [meta] = optuna.artifacts.get_all_artifact_meta(trial, storage=moved._storage)
        with target.open_reader(meta.artifact_id) as reader:
            assert reader.read() == payloads[meta.artifact_id]
    assert {(i.journal, i.study, i.trial_number) for i in target.list()} == {
        ("dst", "moving", n) for n in range(3)}

    # a damaged export: refused, nothing uploaded
    _, third_token = new_user()
    victim = next(iter(payloads))
    (tmp_path / "moving.log.artifacts" / victim).write_bytes(b"truncated")
    out = cli(proxy, third_token, "import", str(exported), "--journal", "dst",
              "--with-artifacts", "--quiet")
    assert out.returncode == 1 and "not the content index.jsonl records" in out.stderr
    assert GrpcArtifactStore(proxy.endpoint, third_token).list() == []
    assert GrpcJournalStorage(proxy.endpoint, third_token, "dst").get_all_studies() == []
    refused = cli(proxy, source_token, "export", "-", "--journal", "src", "--with-artifacts")
    assert refused.returncode == 1 and "give a file, not -" in refused.stderr
