"""`optuna-grpc-storage dashboard`: optuna-dashboard on a user's journal, through the proxy.

optuna-dashboard takes any Optuna storage object; it gets a GrpcJournalStorage, so the page
shows what the workers write as they write it: the storage catches up with the journal when
asked after `read_staleness` (0.1 s), optuna-dashboard keeps a study's trials for 2 s (10 s
above 500 trials) and its study page polls every few seconds.

It runs where the user is, with the user's token, like every other client: it needs no access
to Redis and sees exactly the studies that token sees. That is why it is a client command, not
one of the operator's `storage-proxy` commands. `/study/<name>` redirects to the study's page,
so `Controller(dashboard_url="http://host:8080/study/{study_name}")` links each study.
optuna-dashboard also gets the proxy's artifact store (GrpcArtifactStore, same token): each
trial's page lists its artifacts and outputs, previews images and downloads them.
It asks for a login, checks Host and Origin and can be read-only (dashboard_guard.py).
"""

from __future__ import annotations

import secrets
import signal
import sys
import threading
from collections.abc import Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from optuna_grpc_storage.storage import GrpcArtifactStore, GrpcJournalStorage
from optuna_grpc_storage.tools.dashboard_guard import Guard, token_is_read_only
from optuna_grpc_storage.tools.dashboard_guard import allowed_hosts as dashboard_hosts


class DashboardError(RuntimeError):
    """The dashboard cannot start; the message says what to do."""


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a browser opens several connections at once


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # one line per request is noise
        pass


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def make_app(storage: GrpcJournalStorage, artifact_store: GrpcArtifactStore | None = None) -> Any:
    """optuna-dashboard's WSGI app on `storage` (and its artifacts), plus /study/<name> -> the
    study's page."""
    try:
        import bottle
        from optuna_dashboard import wsgi
    except ImportError:
        raise DashboardError("the dashboard needs optuna-dashboard: "
                             "pip install 'optuna-grpc-storage[dashboard]'") from None
    app = wsgi(storage, artifact_store=artifact_store)

    @app.get("/study/<name:path>")
    def study_by_name(name: str) -> None:
        try:
            study_id = storage.get_study_id_from_name(name)
        except KeyError:
            bottle.abort(404, f"no study {name!r} in journal {storage.grpc_backend.journal!r}")
        bottle.redirect(f"/dashboard/studies/{study_id}", 302)

    return app


def serve(endpoint: str | None, token: str | None, journal: str = "default",
          host: str = "127.0.0.1", port: int = 8080, read_staleness: float = 0.1, *,
          allowed_hosts: Iterable[str] = (), read_only: bool = False,
          login: bool = True) -> int:
    """Serve until interrupted. Port 0 picks a free one; the first line printed says which,
    the second the password (once: it is nowhere else)."""
    storage = GrpcJournalStorage(endpoint, token, journal, read_staleness=read_staleness)
    connection = storage.grpc_backend.client.connection
    read_only = read_only or token_is_read_only(storage.grpc_backend.client.who_am_i())
    password = secrets.token_urlsafe(18)
    app = Guard(make_app(storage, GrpcArtifactStore(connection=connection)),
                passwords=(password, connection.token or ""),
                hosts=dashboard_hosts(host, allowed_hosts), read_only=read_only, login=login)
    try:
        server = make_server(host, port, app, server_class=_ThreadingServer,
                             handler_class=_QuietHandler)
    except OSError as e:
        raise DashboardError(f"cannot serve the dashboard on {host}:{port}: {e.strerror}; "
                             "pick another --port (0 picks a free one)") from None
    shown = f"[{host}]" if ":" in host else host
    base = f"http://{shown}:{server.server_port}"
    print(f"optuna-dashboard for journal {journal!r} on {base}/dashboard"
          + (" (read-only)" if read_only else ""), flush=True)
    print(f"log in with any user name and the password {password} (or your token)"
          if login else "no login (--no-login): anyone who reaches the port can use it",
          flush=True)
    print(f"link studies with Controller(dashboard_url='{base}/study/{{study_name}}')",
          file=sys.stderr, flush=True)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)  # stop as on Ctrl-C
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
