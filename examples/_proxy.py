"""Where the examples run: the proxy named by OPTUNA_GRPC_STORAGE_ENDPOINT (with
OPTUNA_GRPC_STORAGE_TOKEN), or else a throwaway one on an embedded Redis in a temporary
directory, removed at the end."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator

from storage_proxy.testing import ProxyProcess

ENDPOINT_ENV, TOKEN_ENV = "OPTUNA_GRPC_STORAGE_ENDPOINT", "OPTUNA_GRPC_STORAGE_TOKEN"


@contextlib.contextmanager
def proxy_endpoint(user: str = "demo") -> Iterator[tuple[str, str | None]]:
    """(endpoint, token) of the proxy to use."""
    if os.environ.get(ENDPOINT_ENV):
        yield os.environ[ENDPOINT_ENV], os.environ.get(TOKEN_ENV)
        return
    with tempfile.TemporaryDirectory(prefix="storage-proxy-demo-") as data_dir:
        proxy = ProxyProcess(data_dir=data_dir)
        endpoint = proxy.start()
        try:
            print(f"(a throwaway proxy on {endpoint}; set {ENDPOINT_ENV} and {TOKEN_ENV} to use "
                  "yours)")
            yield endpoint, proxy.issue_token(user)
        finally:
            proxy.stop()
