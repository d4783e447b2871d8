"""One proxy per port: `serve` refuses a port another proxy (or any program) listens on.

The server processes of one group bind the port with SO_REUSEPORT, so that the kernel spreads
connections over them. That option lets any process of the same user bind the port too: a
second `storage-proxy serve` would then share the first one's port, and clients would reach
either at random (with another Redis, tokens that work every other call). So before anything
binds the port, the process that owns the group (the supervisor, or the single server
process) takes the port's lock for its whole life, then checks that nothing else listens.

The lock is an abstract Unix socket named after the port (Linux; one name per network
namespace, so per Pod in Kubernetes). The kernel releases it when its process ends, however it
ends: no stale lock file, nothing to clean up after a SIGKILL. It listens, so a second proxy
can connect and learn the holder's pid from the kernel (SO_PEERCRED) to name it. The children
of a group never take it: their supervisor holds it for them.

The check binds the port without SO_REUSEPORT, which fails while any socket listens there:
another program, or a proxy from before this lock. A group that dies with its supervisor
(SIGKILL) may take a moment to release the port, so the check waits a little before it fails.
"""

from __future__ import annotations

import errno
import socket
import struct
import sys
import threading
import time
from pathlib import Path

WAIT_SECONDS = 3.0  # for the listeners of a proxy that just died to go


class PortInUse(Exception):
    """The port is held by another process; the message names it when it can."""


def lock_name(port: int) -> bytes:
    return f"\0optuna-grpc-storage/storage-proxy/port/{port}".encode()


def hold_port(host: str, port: int, check: bool = True) -> socket.socket | None:
    """Take the lock of `port` for the life of this process and, with `check`, make sure
    nothing listens on host:port. PortInUse naming the holder otherwise. Returns the lock's
    socket (keep it open); None where abstract sockets do not exist (not Linux)."""
    lock = _take_lock(port) if sys.platform.startswith("linux") else None
    if check:
        _check_free(host, port)
    return lock


def _take_lock(port: int) -> socket.socket:
    lock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        lock.bind(lock_name(port))
    except OSError as e:
        lock.close()
        if e.errno != errno.EADDRINUSE:
            raise
        raise PortInUse(f"port {port} is held by another storage-proxy "
                        f"({_describe(_holder(port))}); stop it, or give this one another "
                        "--port") from None
    lock.listen(16)
    threading.Thread(target=_answer, args=(lock,), name="port-lock", daemon=True).start()
    return lock


def _answer(lock: socket.socket) -> None:
    """Accept (and close) the connections of proxies asking who holds the port, so their
    queue never fills."""
    while True:
        try:
            conn, _ = lock.accept()
        except OSError:
            return
        conn.close()


def _holder(port: int) -> int | None:
    """The pid of the process holding the lock of `port`, as the kernel reports it."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(lock_name(port))
            creds = probe.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                     struct.calcsize("3i"))
        except OSError:
            return None
    return struct.unpack("3i", creds)[0] or None


def _check_free(host: str, port: int) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is fine
            try:
                probe.bind((host, port))
                return
            except OSError as e:
                if e.errno != errno.EADDRINUSE:
                    raise PortInUse(f"cannot listen on {host}:{port}: {e.strerror}") from None
        if time.monotonic() > deadline:
            raise PortInUse(f"port {port} is in use ({_describe_listeners(port)}); stop "
                            "that, or give this proxy another --port")
        time.sleep(0.1)


def _describe(pid: int | None) -> str:
    if pid is None:
        return "its pid is unknown"
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace").strip()
    except OSError:
        command = ""
    return f"pid {pid}" + (f": {command[:200]}" if command else "")


def _describe_listeners(port: int) -> str:
    """Who listens on `port`, as far as this user may see (psutil, when installed)."""
    try:
        import psutil

        pids = sorted({c.pid for c in psutil.net_connections("tcp")
                       if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
                       and c.pid})
    except Exception:  # not installed, or not allowed to look: say less
        pids = []
    if not pids:
        return "by a process of another user, or one this user may not inspect"
    return "by " + "; ".join(_describe(pid) for pid in pids)
