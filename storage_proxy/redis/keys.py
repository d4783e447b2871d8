"""The Redis key layout: every key the proxy writes, named in one place.

Every key of one journal carries the hash tag ``{namespace/journal}`` and every key of one
namespace the tag ``{namespace}``, so a journal lives on one Redis Cluster shard (each journal
script touches one slot) while a namespace's journals spread over the shards. The operator's
quota settings share the ``{quota}`` tag, the tokens ``{auth}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property


@dataclass(frozen=True)
class JournalRef:
    """Names the Redis keys of one journal of one namespace (each name built once: a ref is
    used many times per request)."""

    prefix: str
    namespace: str
    name: str

    @cached_property
    def _base(self) -> str:
        return f"{self.prefix}:j:{{{self.namespace}/{self.name}}}"

    @cached_property
    def log(self) -> str:
        return self._base + ":log"

    @cached_property
    def lens(self) -> str:
        """The byte length of each of the log's newest entries (a script reads exactly what
        fits its budget): it covers the last LLEN(lens) positions of the log."""
        return self._base + ":lens"

    @cached_property
    def client_prefix(self) -> str:
        """Prefix of the per-client deduplication keys earlier proxies wrote (same hash tag as
        the log): read, never written, so that a retry an older replica recorded is known."""
        return self._base + ":client:"

    @cached_property
    def snapshot(self) -> str:
        """The committed snapshot: a hash of position, size, chunks and the id of its data."""
        return self._base + ":snapshot"

    @cached_property
    def snapshot_prefix(self) -> str:
        """+ id: the LIST of a snapshot's chunks, committed or still being uploaded."""
        return self._base + ":snapshot:"

    @cached_property
    def uploads(self) -> str:
        """Uploads in progress: id -> "<bytes charged> <started ms>"."""
        return self._base + ":uploads"

    @cached_property
    def heartbeats(self) -> str:
        return self._base + ":heartbeats"

    @cached_property
    def usage(self) -> str:
        """HASH: the journal's quota (granted by its namespace, used), and what append.lua
        keeps with it: c:<client> = "<sequence>:<first position>:<last used, ms>" (the
        deduplication records), swept (when records were last swept), lens_from (the first
        position the lens list covers), hb (heartbeat bytes charged)."""
        return self._base + ":usage"

    @cached_property
    def channel(self) -> str:
        return self._base + ":appended"


@dataclass(frozen=True)
class NamespaceKeys:
    """The keys of one namespace (tag ``{namespace}``): its journals and its quota."""

    prefix: str
    namespace: str

    @property
    def journals(self) -> str:
        """SET of the namespace's journal names."""
        return f"{self.prefix}:ns:{{{self.namespace}}}:journals"

    @property
    def quota(self) -> str:
        """HASH: total (bytes granted to journals), seq, and g:<journal> = "<id> <bytes>"."""
        return f"{self.prefix}:ns:{{{self.namespace}}}:quota"

    @property
    def artifacts(self) -> str:
        """HASH artifact id -> JSON record (its version, size, sha256, labels, created)."""
        return f"{self.prefix}:ns:{{{self.namespace}}}:artifacts"

    @property
    def artifact_blobs(self) -> str:
        """HASH version (the blob's name in the artifact store) -> artifact id: the blobs in
        use; any other blob without a live upload is garbage (artifacts/sweep.py)."""
        return f"{self.prefix}:ns:{{{self.namespace}}}:artifact-blobs"

    @property
    def artifact_uploads(self) -> str:
        """HASH version -> "<bytes reserved> <lease deadline, ms>": uploads in progress."""
        return f"{self.prefix}:ns:{{{self.namespace}}}:artifact-uploads"

    @property
    def artifact_usage(self) -> str:
        """HASH bytes, count: what the namespace's stored artifacts hold."""
        return f"{self.prefix}:ns:{{{self.namespace}}}:artifact-usage"


def quota_settings(prefix: str) -> tuple[str, str]:
    """(HASH user -> JSON overrides, STRING JSON of the defaults), set by `storage-proxy
    quota set`."""
    return f"{prefix}:{{quota}}:users", f"{prefix}:{{quota}}:default"


def proxies(prefix: str) -> str:
    """ZSET of the server processes using this Redis with this prefix (member: who, score:
    when it last said so), so the token commands can tell that a proxy reads what they write."""
    return f"{prefix}:{{proxies}}"
