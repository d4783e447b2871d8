"""LocalLauncher: the workers as processes on this machine (the default)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

from optuna_grpc_storage.runner.batch import Batch
from optuna_grpc_storage.runner.launchers.base import Launch, Launcher
from optuna_grpc_storage.storage.connection import ENDPOINT_ENV, TOKEN_ENV


class LocalLaunch(Launch):
    def __init__(self, directory: Path, processes: list[subprocess.Popen[bytes]]) -> None:
        self.directory = directory
        self.processes = processes

    def alive(self) -> bool:
        return any(p.poll() is None for p in self.processes)

    def exit_codes(self) -> list[int | None]:
        return [p.poll() for p in self.processes]

    def explain(self) -> str:
        lines = [f"worker logs in {self.directory}"]
        for i, p in enumerate(self.processes):
            code = p.poll()
            if code not in (None, 0):
                tail = _tail(self.directory / f"worker-{i}.log")
                lines.append(f"worker {i} exited with code {code}:\n{tail}")
        return "\n".join(lines)

    def stop(self) -> None:
        for p in self.processes:
            if p.poll() is None:
                p.terminate()
        for p in self.processes:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


class LocalLauncher(Launcher):
    """Runs `batch.workers` worker processes with this Python, in this environment.

    Resources, `runtime_image`, `use_gpu` and the Pod options (pod_options.py) are settings of
    the Kubernetes launcher and do not apply here (they are checked all the same).
    Requirements are installed with pip into this environment first only with
    `install_requirements=True` (otherwise they are expected to be installed already)."""

    def __init__(self, directory: str | os.PathLike[str] | None = None, *,
                 install_requirements: bool = False, python: str = sys.executable) -> None:
        self.directory = Path(directory) if directory is not None else None
        self.install_requirements = install_requirements
        self.python = python

    def launch(self, batch: Batch) -> LocalLaunch:
        base = self.directory or Path(tempfile.gettempdir()) / "optuna-grpc-storage"
        base.mkdir(parents=True, exist_ok=True)
        directory = Path(tempfile.mkdtemp(prefix=f"{_slug(batch.study_name)}-{batch.batch_id}-",
                                          dir=base))
        objective = directory / "objective.pkl"
        objective.touch(mode=0o600)  # it may hold secrets the objective closed over
        objective.write_bytes(batch.objective)
        if batch.requirements:
            self._requirements(batch, directory)
        env = {**os.environ, ENDPOINT_ENV: batch.endpoint, "PYTHONUNBUFFERED": "1"}
        if batch.token:
            env[TOKEN_ENV] = batch.token
        processes = []
        for i in range(batch.workers):
            command = [self.python, "-m", "optuna_grpc_storage.runner.worker",
                       *batch.worker_args(str(objective)), "--worker-index", str(i)]
            with open(directory / f"worker-{i}.log", "ab") as log:
                processes.append(subprocess.Popen(command, env=env, stdout=log,
                                                  stderr=subprocess.STDOUT,
                                                  stdin=subprocess.DEVNULL))
        return LocalLaunch(directory, processes)

    def _requirements(self, batch: Batch, directory: Path) -> None:
        if not self.install_requirements:
            warnings.warn(
                "LocalLauncher runs the workers in this Python environment and does not "
                f"install {list(batch.requirements)}; install them here, or use "
                "LocalLauncher(install_requirements=True)", stacklevel=4,
            )
            return
        requirements = directory / "requirements.txt"
        requirements.write_text("".join(f"{r}\n" for r in batch.requirements))
        with open(directory / "pip.log", "wb") as log:
            result = subprocess.run([self.python, "-m", "pip", "install", "-r", str(requirements)],
                                    stdout=log, stderr=subprocess.STDOUT, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"pip could not install {list(batch.requirements)}:\n"
                               f"{_tail(directory / 'pip.log')}")


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:40] or "study"


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
