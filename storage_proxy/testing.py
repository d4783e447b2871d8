"""Start a proxy as a child process on loopback: used by tests, benchmarks, load tests and the
demo, so they all exercise the real `storage-proxy serve` command. The proxy dies with the
process that started it (however that dies), and `kill()` returns only once every process of
the proxy's group is gone, so a test that "kills the proxy" really has."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from storage_proxy.process.children import start_child

LISTENING = re.compile(r"listening on \S+:(\d+) ")
METRICS = re.compile(r"metrics on (https?)://\S+?:(\d+)/metrics")


def descendants(pid: int) -> list[int]:
    """The processes below `pid` (Linux /proc; empty elsewhere)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
        for child in children:
            out += [child, *descendants(child)]
    return out


def wait_gone(pids: list[int], timeout: float = 10.0) -> None:
    """Wait until none of `pids` runs; RuntimeError naming the survivors."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [pid for pid in pids if _running(pid)]
        if not alive:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes {alive} of a stopped proxy outlived it")
        time.sleep(0.02)


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a zombie has exited; its parent has yet to reap it


def proxy_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "storage_proxy", *args]


class ProxyProcess:
    """`storage-proxy serve` on 127.0.0.1 with a free port (or the one given)."""

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        data_dir: str | os.PathLike[str] | None = None,
        port: int = 0,
        auth: str = "token",
        key_prefix: str = "ogs",
        extra_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        metrics_port: int = 0,
        artifact_store: str | None = None,
        redis_password_file: str | None = None,
    ) -> None:
        self.redis_password_file = redis_password_file
        self.redis_url = redis_url
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="storage-proxy-"))
        self.requested_port = port
        self.auth = auth
        self.key_prefix = key_prefix
        self.extra_args = extra_args
        self.env = env
        self.port: int | None = None
        self.requested_metrics_port = metrics_port  # 0: a free port, -1: none
        self.metrics_port: int | None = None
        self.metrics_scheme = "http"
        # With an external Redis the proxy keeps artifacts only where told: here, by default,
        # in the data directory (as it does on its own with the embedded Redis).
        self.artifact_store = artifact_store if artifact_store is not None \
            else str(self.data_dir / "artifacts")
        self.proc: subprocess.Popen[bytes] | None = None
        self._group: list[int] = []  # the group's processes when it was last signalled
        self.log_path = self.data_dir / f"proxy-{id(self)}.log"

    @property
    def metrics_url(self) -> str:
        assert self.metrics_port is not None, "proxy not started, or --metrics-port -1"
        return f"{self.metrics_scheme}://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def endpoint(self) -> str:
        assert self.port is not None, "proxy not started"
        return f"127.0.0.1:{self.port}"

    def _common(self) -> list[str]:
        args = ["--key-prefix", self.key_prefix]
        if self.redis_password_file:
            args += ["--redis-password-file", self.redis_password_file]
        return args + (["--redis-url", self.redis_url] if self.redis_url
                       else ["--data-dir", str(self.data_dir)])

    def start(self, timeout: float = 30.0) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        port = self.port if self.port is not None else self.requested_port
        args = proxy_command("serve", "--host", "127.0.0.1", "--port", str(port),
                             "--auth", self.auth, "--metrics-port",
                             str(self.requested_metrics_port), "--artifact-store",
                             self.artifact_store, *self._common(), *self.extra_args)
        env = {**os.environ, **(self.env or {})}
        with open(self.log_path, "ab") as log:
            self.proc = start_child(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                text = f.read().decode(errors="replace")
            found = LISTENING.search(text)
            if found:
                self.port = int(found.group(1))
                scraped = METRICS.search(text)
                self.metrics_port = int(scraped.group(2)) if scraped else None
                self.metrics_scheme = scraped.group(1) if scraped else "http"
                return self.endpoint
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"storage-proxy did not start:\n{self.log_tail()}")

    def issue_token(self, user: str) -> str:
        out = subprocess.run(
            proxy_command("token", "issue", "--user", user, *self._common()),
            check=True, capture_output=True, text=True, env={**os.environ, **(self.env or {})},
        )
        return out.stdout.strip().splitlines()[-1]

    def send_signal(self, sig: int) -> None:
        """Signal the proxy (its supervisor forwards stop signals to the group), remembering
        the group's processes so that wait() can check they are all gone."""
        assert self.proc is not None, "proxy not started"
        self._group = sorted({*self._group, *descendants(self.proc.pid)})
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        """The exit code, once the proxy has exited and every process of its group is gone
        (subprocess.TimeoutExpired if it has not exited in `timeout` seconds)."""
        assert self.proc is not None, "proxy not started"
        code = self.proc.wait(timeout)
        wait_gone([*self._group, *descendants(self.proc.pid)])
        self._group = []
        return code

    def stop(self, timeout: float = 30.0, sig: int = signal.SIGTERM) -> int | None:
        """Graceful stop; returns the exit code once every process of the group is gone."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code, self.proc = self.proc.returncode, None
        wait_gone(self._group)
        self._group = []
        return code

    def kill(self) -> None:
        """SIGKILL, as a crash would; returns once every process of the group has gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.send_signal(signal.SIGKILL)
            self.proc.wait()
        wait_gone(self._group)  # also those of a signal sent earlier
        self._group = []
        self.proc = None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> ProxyProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
