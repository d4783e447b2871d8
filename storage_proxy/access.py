"""What a verified token lets a call do: which RPC reads and which writes, and the one check
every call passes (Authenticator.authorize) before it touches a Redis key.

A method is listed here as READ or WRITE; one that is in neither is refused to every scoped
token (fail closed), and tests/test_scopes.py checks that every RPC of the service is listed.
Expiry is the Authenticator's: an expired token never becomes a Grant.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from optuna_grpc_storage.protocol.errors import RequestError
from optuna_grpc_storage.protocol.scopes import FULL, Scope, format_time

# Calls that change nothing (Session: opening the stream; each request is checked as
# AppendLogs or ReadLogs).
READ = frozenset({"ReadLogs", "LoadSnapshot", "WhoAmI", "ListJournals", "GetHeartbeats",
                  "Session", "DownloadArtifact", "ListArtifacts"})
WRITE = frozenset({"AppendLogs", "SaveSnapshot", "RecordHeartbeat", "DeleteJournal",
                   "ShareToken", "UploadArtifact", "DeleteArtifact"})


@dataclass(frozen=True)
class Grant:
    """A caller as its token describes it: the namespace its calls act in, and its scope."""

    namespace: str
    scope: Scope = FULL
    user: str = ""
    token_id: str = ""
    created: float | None = None

    def _issued(self) -> str:
        if not self.token_id:
            return "no token"
        return f"token {self.token_id} of user {self.user!r}, issued {format_time(self.created)}"

    def check(self, method: str, journal: str | None = None) -> None:
        """PERMISSION_DENIED unless this grant may call `method` (on `journal`)."""
        if method in WRITE and self.scope.read_only:
            raise RequestError(
                grpc.StatusCode.PERMISSION_DENIED,
                f"this token is read-only ({self._issued()}; {self.scope.describe()}): "
                f"{method} writes; use a token that may write")
        if method not in READ | WRITE and (self.scope.read_only or self.scope.journal):
            raise RequestError(
                grpc.StatusCode.PERMISSION_DENIED,
                f"{method} is open only to unscoped tokens; this one is "
                f"{self.scope.describe()} ({self._issued()})")
        if journal is not None and not self.scope.may_use(journal):
            raise RequestError(
                grpc.StatusCode.PERMISSION_DENIED,
                f"this token may use only journals matching {self.scope.journal!r} "
                f"({self._issued()}; {self.scope.describe()}), not "
                + (repr(journal) if journal else "artifacts without a journal label"))
