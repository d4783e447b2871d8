"""The operator's token bookkeeping (`storage-proxy token issue|list|revoke`): names that are
exactly what they look like, ids that never collide, scopes, expiry and last use."""

from __future__ import annotations

import subprocess

import pytest

from optuna_grpc_storage.protocol.errors import RequestError
from optuna_grpc_storage.protocol.names import check_user
from storage_proxy.testing import proxy_command


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(proxy_command(*args), capture_output=True, text=True, timeout=60,
                          input=stdin)


@pytest.mark.parametrize("name", ["alice\n", "alice\r\n", "\nalice", "ali\nce", "alice "])
def test_a_user_name_is_all_of_it(name: str) -> None:
    """`re.match` with `$` took "alice\\n" for "alice": it showed as the plain name in `token
    list` and survived `token revoke --user alice`."""
    with pytest.raises(RequestError, match="invalid user name"):
        check_user(name)


def test_token_issue_refuses_a_name_with_a_newline(redis_server) -> None:
    out = run("token", "issue", "--user", "alice\n", "--redis-url", redis_server.url)
    assert out.returncode == 2 and "invalid user name" in out.stderr
    assert "ogs_" not in out.stdout
