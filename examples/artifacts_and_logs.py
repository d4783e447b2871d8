"""What a trial leaves behind, through the same endpoint and token: a checkpoint uploaded as an
artifact (only the best trials keep theirs), a TrialController log shown as the trial's note
in optuna-dashboard, and the trial's own prints and traceback, kept after its worker is gone.

    .venv/bin/python examples/artifacts_and_logs.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
from _proxy import proxy_endpoint

import optuna_grpc_storage as aiauto  # AIAuto's names: AIAutoController, TrialController


def objective(trial: optuna.Trial) -> float:
    """Runs in a worker; everything it needs comes from the environment the launcher set."""
    import json
    import os

    import optuna_grpc_storage as aiauto

    tc = aiauto.TrialController(trial)
    lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    loss = 1.0
    for epoch in range(5):
        loss *= 1 - min(0.9, lr * 10)
        tc.log(f"epoch {epoch}: loss {loss:.4f}")  # the trial's note in optuna-dashboard
    print(f"trained with lr={lr:.5f}")  # kept with the trial: `optuna-grpc-storage logs`
    if lr > 0.07:
        raise RuntimeError(f"diverged at lr={lr:.3f}")  # the traceback is kept too
    ac = aiauto.AIAutoController()  # the same controller as the notebook's, in the worker
    checkpoint = os.path.join(ac.get_artifact_tmp_dir(), f"model-{trial.number}.json")
    with open(checkpoint, "w") as f:
        json.dump({"lr": lr, "loss": loss}, f)
    ac.upload_artifact(trial, checkpoint)  # sets the trial's user attribute artifact_id
    return loss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer trials (for the tests)")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    n_trials = 8 if args.quick else 20
    with proxy_endpoint() as (endpoint, token), tempfile.TemporaryDirectory() as workdir:
        ac = aiauto.AIAutoController(token, endpoint=endpoint,
                                     launcher=aiauto.LocalLauncher(Path(workdir)))
        study = ac.create_study("artifacts-demo", direction="minimize",
                                sampler=optuna.samplers.TPESampler(seed=3))
        name = study.optimize(objective, n_trials=n_trials, parallelism=2, top_n_artifacts=3,
                              wait_option="WAIT_ALL_TRIALS")
        for process in study.launch_of(name).processes:
            process.wait()

        best = study.get_study().best_trial
        copy = Path(workdir) / "best-model.json"
        optuna.artifacts.download_artifact(artifact_store=ac.get_artifact_store(),
                                           artifact_id=best.user_attrs["artifact_id"],
                                           file_path=str(copy))
        print(f"best trial {best.number}: loss {best.value:.4f}, checkpoint {copy.read_text()}")
        kept = [t.number for t in study.get_study().trials if t.user_attrs.get("artifact_id")
                and _exists(ac.get_artifact_store(), t.user_attrs["artifact_id"])]
        print(f"trials that kept their checkpoint (top_n_artifacts=3): {kept}")
        trials = study.get_study().trials
        shown = next((t.number for t in trials if t.state.name == "FAIL"), 0)
        print(f"the output of trial {shown} ({trials[shown].state.name}), as "
              f"`optuna-grpc-storage logs artifacts-demo {shown}` shows it:")
        env = {**os.environ, "OPTUNA_GRPC_STORAGE_ENDPOINT": endpoint,
               "OPTUNA_GRPC_STORAGE_TOKEN": token or ""}
        subprocess.run([sys.executable, "-m", "optuna_grpc_storage.tools.cli", "logs",
                        "artifacts-demo", str(shown)], env=env, check=True)
    return 0


def _exists(store: aiauto.GrpcArtifactStore, artifact_id: str) -> bool:
    try:
        store.open_reader(artifact_id).close()
    except optuna.artifacts.exceptions.ArtifactNotFound:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
