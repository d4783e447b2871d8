"""The Lua scripts, one `.lua` file each in lua/, loaded by name.

A script is registered on a client with `register(client, "append")`; its round trips are then
counted in the metrics under that name (command="append"). Errors a script raises on purpose
start with a tag (BEYOND_END ...): they refuse a request, they are not Redis failures.
NEED_QUOTA is the one the proxy answers itself (quotas.py reserves more bytes and retries).
"""

from __future__ import annotations

import functools
import hashlib
import re
from importlib import resources
from typing import Any

import grpc

from optuna_grpc_storage.protocol.errors import RequestError

REFUSALS = {
    "BEYOND_END": grpc.StatusCode.FAILED_PRECONDITION,
    "TOO_LARGE": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "QUOTA": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "TOO_MANY_UPLOADS": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "GONE": grpc.StatusCode.ABORTED,  # retried by clients: the whole upload starts again
    "REPLACED": grpc.StatusCode.ABORTED,
    "NO_JOURNAL": grpc.StatusCode.FAILED_PRECONDITION,
    "NEED_QUOTA": grpc.StatusCode.UNAVAILABLE,  # only if reserving more did not settle it
}
_TAG = re.compile(r"(?:^|\s)(" + "|".join(REFUSALS) + r")\s")

_names_by_sha: dict[str, str] = {}


@functools.cache
def source(name: str) -> str:
    text = resources.files(__package__).joinpath("lua", f"{name}.lua").read_text()
    _names_by_sha[hashlib.sha1(text.encode()).hexdigest()] = name
    return text


def register(client: Any, name: str) -> Any:
    """redis-py's Script object for lua/<name>.lua on `client` (EVALSHA, loaded on demand)."""
    return client.register_script(source(name))


def name_of(sha: str) -> str:
    """The script's file name for a SHA1 sent with EVALSHA ("script" if not ours)."""
    return _names_by_sha.get(sha, "script")


def is_refusal(e: BaseException) -> bool:
    return str(e).split(" ", 1)[0] in REFUSALS


def refusal(e: Exception) -> RequestError | None:
    """The RequestError a script's tagged error stands for, or None."""
    text = str(e)
    found = _TAG.search(text)
    if found is None:
        return None
    return RequestError(REFUSALS[found.group(1)], text[found.end() :].strip())
