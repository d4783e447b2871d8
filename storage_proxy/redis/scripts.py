"""The Lua scripts, one `.lua` file each in lua/, loaded by name.

A script is registered on a client with `register(client, "append")`; its round trips are then
counted in the metrics under that name (command="append"). Errors a script raises on purpose
start with a tag (BEYOND_END ...): they refuse a request, they are not Redis failures.
"""

from __future__ import annotations

import functools
import hashlib
from importlib import resources
from typing import Any

import grpc

from optuna_grpc_storage.protocol.errors import RequestError

REFUSALS = {"BEYOND_END": grpc.StatusCode.FAILED_PRECONDITION}

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
    for tag, code in REFUSALS.items():
        if tag in text:
            return RequestError(code, text[text.index(tag) + len(tag) :].strip())
    return None
