"""User and journal names: they become parts of Redis keys, hash tags and DNS names."""

from __future__ import annotations

import re

from optuna_grpc_storage.protocol.errors import invalid

# User names end up in DNS names ({user}.<proxy host>) and Redis hash tags: a DNS label.
USER_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# Journal names: no slashes, braces, whitespace or unicode; they become part of Redis keys.
JOURNAL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_user(name: str) -> str:
    # fullmatch, never match with "$": "$" also matches before a trailing newline.
    if not USER_RE.fullmatch(name):
        raise invalid(
            f"invalid user name {name[:80]!r}: use 1-63 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return name


def check_journal(name: str) -> str:
    if not JOURNAL_RE.fullmatch(name):
        shown = name[:80] + ("..." if len(name) > 80 else "")
        raise invalid(
            f"invalid journal name {shown!r}: use 1-128 characters from A-Z a-z 0-9 . _ -, "
            "starting with a letter or digit"
        )
    return name


# Artifact ids name files on the proxy's disk or keys in its bucket: the journal name rule,
# so that no id can be a path (no '/', no '..', no NUL, nothing absolute) or overlong.
ARTIFACT_RE = JOURNAL_RE


def check_artifact_id(artifact_id: str) -> str:
    if not ARTIFACT_RE.fullmatch(artifact_id):
        shown = artifact_id[:80] + ("..." if len(artifact_id) > 80 else "")
        raise invalid(
            f"invalid artifact id {shown!r}: use 1-128 characters from A-Z a-z 0-9 . _ -, "
            "starting with a letter or digit (Optuna's artifact ids are UUIDs)"
        )
    return artifact_id
