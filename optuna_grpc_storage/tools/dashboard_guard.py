"""What stands before optuna-dashboard: a login, the Host and Origin checks, read-only mode.

optuna-dashboard has no access control: whoever reaches its port can read and delete every
study the token sees, and a web page can reach a port on 127.0.0.1 by DNS rebinding (its own
host name, pointed at 127.0.0.1). So every request must
- name an allowed Host (the bound host, localhost, and --allowed-host): a rebinding page's
  requests carry its own host name and are refused;
- be logged in: HTTP Basic (any user name; the password printed once at start, or the user's
  token), after which a session cookie (HttpOnly, SameSite=Strict) serves the page's own API
  calls;
- if it changes anything (not GET/HEAD/OPTIONS), come from this origin (Origin, else Referer,
  if the client sends one), and not be in read-only mode (--read-only, or a read-only token).
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote, urlsplit

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARDS = frozenset({"", "0.0.0.0", "::"})
COOKIE = "ogs_dashboard_session"
REALM = "optuna-grpc-storage dashboard"

StartResponse = Callable[..., Any]


def host_name(host: str) -> str:
    """'Example.com:8080' -> 'example.com'; '[::1]:8080' -> '::1'."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def allowed_hosts(bound: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """localhost, the bound address (unless it is a wildcard) and the names given."""
    names = set(LOCAL_HOSTS) | {host_name(h) for h in extra}
    if host_name(bound) not in WILDCARDS:
        names.add(host_name(bound))
    return frozenset(names)


def token_is_read_only(who_am_i: Any) -> bool:
    """Whether WhoAmI says the token may only read (its `scope`, where the proxy has it)."""
    scope = getattr(who_am_i, "scope", None)
    return bool(getattr(scope, "read_only", False))


class Guard:
    """WSGI middleware around optuna-dashboard's app (see the module's docstring)."""

    def __init__(self, app: Any, *, passwords: Iterable[str], hosts: frozenset[str],
                 read_only: bool = False, login: bool = True) -> None:
        self.app = app
        self.passwords = [p.encode() for p in passwords if p]
        self.hosts = hosts
        self.read_only = read_only
        self.login = login
        self.session = secrets.token_urlsafe(32)  # this process's; a restart logs out

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "")
        if host_name(host) not in self.hosts:
            return _deny(start_response, "403 Forbidden", f"Host {host!r} is not served here "
                         "(start the dashboard with --allowed-host NAME to allow it)")
        logged_in, by_password = self._logged_in(environ)
        if not logged_in:
            return _deny(start_response, "401 Unauthorized", "log in: any user name, and the "
                         "password the dashboard printed at start (or your token)",
                         [("WWW-Authenticate", f'Basic realm="{REALM}", charset="UTF-8"')])
        method = environ.get("REQUEST_METHOD", "GET").upper()
        if method not in SAFE_METHODS:
            origin = _origin(environ)
            own = f"{environ.get('wsgi.url_scheme', 'http')}://{host}".lower()
            if origin is not None and origin != own:
                return _deny(start_response, "403 Forbidden",
                             f"a {method} from {origin} is refused: only this page may "
                             "change studies")
            if self.read_only:
                return _deny(start_response, "403 Forbidden", "this dashboard is read-only "
                             "(--read-only, or a read-only token): nothing can be changed")
        if not by_password:
            return self.app(environ, start_response)
        cookie = ("Set-Cookie", f"{COOKIE}={self.session}; Path=/; HttpOnly; SameSite=Strict")
        if method == "GET" and environ.get("HTTP_SEC_FETCH_MODE") == "navigate":
            # A browser that logged in (perhaps by http://user:password@host/ in the URL, which
            # the page's own fetch() calls cannot use): the same page again, by the cookie.
            query = environ.get("QUERY_STRING")
            where = f"{environ.get('wsgi.url_scheme', 'http')}://{host}" + \
                quote(environ.get("PATH_INFO", "/")) + (f"?{query}" if query else "")
            start_response("303 See Other", [("Location", where), ("Content-Length", "0"),
                                             cookie])
            return [b""]

        def with_cookie(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
            return start_response(status, [*headers, cookie], *exc)

        return self.app(environ, with_cookie)

    def _logged_in(self, environ: dict[str, Any]) -> tuple[bool, bool]:
        """(logged in, by a password this time: the answer sets the session cookie)."""
        if not self.login:
            return True, False
        for part in environ.get("HTTP_COOKIE", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE and hmac.compare_digest(value.encode(), self.session.encode()):
                return True, False
        scheme, _, encoded = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme.lower() != "basic":
            return False, False
        try:
            _user, _, password = base64.b64decode(encoded, validate=True).partition(b":")
        except ValueError:
            return False, False
        ok = any(hmac.compare_digest(password, p) for p in self.passwords)
        return ok, ok


def _origin(environ: dict[str, Any]) -> str | None:
    """Where a request comes from: Origin, else Referer's origin, else None (not a browser)."""
    origin = environ.get("HTTP_ORIGIN")
    if origin:
        return origin.strip().lower()
    referer = environ.get("HTTP_REFERER")
    if referer:
        parts = urlsplit(referer)
        return f"{parts.scheme}://{parts.netloc}".lower()
    return None


def _deny(start_response: StartResponse, status: str, message: str,
          headers: list[tuple[str, str]] | None = None) -> list[bytes]:
    body = json.dumps({"reason": message}).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(body))), *(headers or [])])
    return [body]
