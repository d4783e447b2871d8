from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AppendLogsRequest(_message.Message):
    __slots__ = ("journal", "entries", "client_id", "sequence", "known_position")
    JOURNAL_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    KNOWN_POSITION_FIELD_NUMBER: _ClassVar[int]
    journal: str
    entries: _containers.RepeatedScalarFieldContainer[bytes]
    client_id: str
    sequence: int
    known_position: int
    def __init__(self, journal: _Optional[str] = ..., entries: _Optional[_Iterable[bytes]] = ..., client_id: _Optional[str] = ..., sequence: _Optional[int] = ..., known_position: _Optional[int] = ...) -> None: ...

class AppendLogsResponse(_message.Message):
    __slots__ = ("first_position", "unseen", "unseen_complete", "duplicate")
    FIRST_POSITION_FIELD_NUMBER: _ClassVar[int]
    UNSEEN_FIELD_NUMBER: _ClassVar[int]
    UNSEEN_COMPLETE_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    first_position: int
    unseen: _containers.RepeatedScalarFieldContainer[bytes]
    unseen_complete: bool
    duplicate: bool
    def __init__(self, first_position: _Optional[int] = ..., unseen: _Optional[_Iterable[bytes]] = ..., unseen_complete: _Optional[bool] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class SessionRequest(_message.Message):
    __slots__ = ("append", "read")
    APPEND_FIELD_NUMBER: _ClassVar[int]
    READ_FIELD_NUMBER: _ClassVar[int]
    append: AppendLogsRequest
    read: ReadLogsRequest
    def __init__(self, append: _Optional[_Union[AppendLogsRequest, _Mapping]] = ..., read: _Optional[_Union[ReadLogsRequest, _Mapping]] = ...) -> None: ...

class SessionResponse(_message.Message):
    __slots__ = ("append", "chunk", "error", "last")
    APPEND_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    append: AppendLogsResponse
    chunk: LogChunk
    error: Error
    last: bool
    def __init__(self, append: _Optional[_Union[AppendLogsResponse, _Mapping]] = ..., chunk: _Optional[_Union[LogChunk, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., last: _Optional[bool] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("code", "message", "retry_after_ms")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    retry_after_ms: int
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., retry_after_ms: _Optional[int] = ...) -> None: ...

class ReadLogsRequest(_message.Message):
    __slots__ = ("journal", "position", "max_entries")
    JOURNAL_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    MAX_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    journal: str
    position: int
    max_entries: int
    def __init__(self, journal: _Optional[str] = ..., position: _Optional[int] = ..., max_entries: _Optional[int] = ...) -> None: ...

class LogChunk(_message.Message):
    __slots__ = ("start", "entries", "journal_length")
    START_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_LENGTH_FIELD_NUMBER: _ClassVar[int]
    start: int
    entries: _containers.RepeatedScalarFieldContainer[bytes]
    journal_length: int
    def __init__(self, start: _Optional[int] = ..., entries: _Optional[_Iterable[bytes]] = ..., journal_length: _Optional[int] = ...) -> None: ...

class SnapshotChunk(_message.Message):
    __slots__ = ("journal", "position", "data", "total_size")
    JOURNAL_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    journal: str
    position: int
    data: bytes
    total_size: int
    def __init__(self, journal: _Optional[str] = ..., position: _Optional[int] = ..., data: _Optional[bytes] = ..., total_size: _Optional[int] = ...) -> None: ...

class SaveSnapshotResponse(_message.Message):
    __slots__ = ("stored", "position")
    STORED_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    stored: bool
    position: int
    def __init__(self, stored: _Optional[bool] = ..., position: _Optional[int] = ...) -> None: ...

class LoadSnapshotRequest(_message.Message):
    __slots__ = ("journal",)
    JOURNAL_FIELD_NUMBER: _ClassVar[int]
    journal: str
    def __init__(self, journal: _Optional[str] = ...) -> None: ...

class ListJournalsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class JournalInfo(_message.Message):
    __slots__ = ("name", "length", "snapshot_position", "snapshot_bytes", "bytes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_POSITION_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_BYTES_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    length: int
    snapshot_position: int
    snapshot_bytes: int
    bytes: int
    def __init__(self, name: _Optional[str] = ..., length: _Optional[int] = ..., snapshot_position: _Optional[int] = ..., snapshot_bytes: _Optional[int] = ..., bytes: _Optional[int] = ...) -> None: ...

class ListJournalsResponse(_message.Message):
    __slots__ = ("journals",)
    JOURNALS_FIELD_NUMBER: _ClassVar[int]
    journals: _containers.RepeatedCompositeFieldContainer[JournalInfo]
    def __init__(self, journals: _Optional[_Iterable[_Union[JournalInfo, _Mapping]]] = ...) -> None: ...

class DeleteJournalRequest(_message.Message):
    __slots__ = ("journal",)
    JOURNAL_FIELD_NUMBER: _ClassVar[int]
    journal: str
    def __init__(self, journal: _Optional[str] = ...) -> None: ...

class DeleteJournalResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    def __init__(self, deleted: _Optional[bool] = ...) -> None: ...

class WhoAmIRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Limits(_message.Message):
    __slots__ = ("max_entry_bytes", "max_batch_entries", "max_batch_bytes", "max_chunk_bytes", "max_snapshot_bytes", "max_message_bytes", "max_unseen_entries")
    MAX_ENTRY_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_SNAPSHOT_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_UNSEEN_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    max_entry_bytes: int
    max_batch_entries: int
    max_batch_bytes: int
    max_chunk_bytes: int
    max_snapshot_bytes: int
    max_message_bytes: int
    max_unseen_entries: int
    def __init__(self, max_entry_bytes: _Optional[int] = ..., max_batch_entries: _Optional[int] = ..., max_batch_bytes: _Optional[int] = ..., max_chunk_bytes: _Optional[int] = ..., max_snapshot_bytes: _Optional[int] = ..., max_message_bytes: _Optional[int] = ..., max_unseen_entries: _Optional[int] = ...) -> None: ...

class Quota(_message.Message):
    __slots__ = ("max_bytes", "max_journals", "max_snapshot_bytes", "max_entry_bytes", "bytes_used", "journals", "max_artifact_bytes", "max_artifacts", "max_artifact_size", "artifact_bytes_used", "artifacts")
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_JOURNALS_FIELD_NUMBER: _ClassVar[int]
    MAX_SNAPSHOT_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_ENTRY_BYTES_FIELD_NUMBER: _ClassVar[int]
    BYTES_USED_FIELD_NUMBER: _ClassVar[int]
    JOURNALS_FIELD_NUMBER: _ClassVar[int]
    MAX_ARTIFACT_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    MAX_ARTIFACT_SIZE_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_BYTES_USED_FIELD_NUMBER: _ClassVar[int]
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    max_bytes: int
    max_journals: int
    max_snapshot_bytes: int
    max_entry_bytes: int
    bytes_used: int
    journals: int
    max_artifact_bytes: int
    max_artifacts: int
    max_artifact_size: int
    artifact_bytes_used: int
    artifacts: int
    def __init__(self, max_bytes: _Optional[int] = ..., max_journals: _Optional[int] = ..., max_snapshot_bytes: _Optional[int] = ..., max_entry_bytes: _Optional[int] = ..., bytes_used: _Optional[int] = ..., journals: _Optional[int] = ..., max_artifact_bytes: _Optional[int] = ..., max_artifacts: _Optional[int] = ..., max_artifact_size: _Optional[int] = ..., artifact_bytes_used: _Optional[int] = ..., artifacts: _Optional[int] = ...) -> None: ...

class TokenScope(_message.Message):
    __slots__ = ("read_only", "journal_pattern", "expires_ms")
    READ_ONLY_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_PATTERN_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_MS_FIELD_NUMBER: _ClassVar[int]
    read_only: bool
    journal_pattern: str
    expires_ms: int
    def __init__(self, read_only: _Optional[bool] = ..., journal_pattern: _Optional[str] = ..., expires_ms: _Optional[int] = ...) -> None: ...

class WhoAmIResponse(_message.Message):
    __slots__ = ("namespace", "server_version", "limits", "auth_required", "quota", "scope", "user", "token_id")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    AUTH_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    QUOTA_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    server_version: str
    limits: Limits
    auth_required: bool
    quota: Quota
    scope: TokenScope
    user: str
    token_id: str
    def __init__(self, namespace: _Optional[str] = ..., server_version: _Optional[str] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ..., auth_required: _Optional[bool] = ..., quota: _Optional[_Union[Quota, _Mapping]] = ..., scope: _Optional[_Union[TokenScope, _Mapping]] = ..., user: _Optional[str] = ..., token_id: _Optional[str] = ...) -> None: ...

class ShareTokenRequest(_message.Message):
    __slots__ = ("journal_pattern", "read_only", "expires_seconds", "note")
    JOURNAL_PATTERN_FIELD_NUMBER: _ClassVar[int]
    READ_ONLY_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_SECONDS_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    journal_pattern: str
    read_only: bool
    expires_seconds: int
    note: str
    def __init__(self, journal_pattern: _Optional[str] = ..., read_only: _Optional[bool] = ..., expires_seconds: _Optional[int] = ..., note: _Optional[str] = ...) -> None: ...

class ShareTokenResponse(_message.Message):
    __slots__ = ("token", "token_id", "scope")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    token: str
    token_id: str
    scope: TokenScope
    def __init__(self, token: _Optional[str] = ..., token_id: _Optional[str] = ..., scope: _Optional[_Union[TokenScope, _Mapping]] = ...) -> None: ...

class RecordHeartbeatRequest(_message.Message):
    __slots__ = ("journal", "trial_ids")
    JOURNAL_FIELD_NUMBER: _ClassVar[int]
    TRIAL_IDS_FIELD_NUMBER: _ClassVar[int]
    journal: str
    trial_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, journal: _Optional[str] = ..., trial_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class RecordHeartbeatResponse(_message.Message):
    __slots__ = ("server_time_ms",)
    SERVER_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    server_time_ms: int
    def __init__(self, server_time_ms: _Optional[int] = ...) -> None: ...

class GetHeartbeatsRequest(_message.Message):
    __slots__ = ("journal", "trial_ids")
    JOURNAL_FIELD_NUMBER: _ClassVar[int]
    TRIAL_IDS_FIELD_NUMBER: _ClassVar[int]
    journal: str
    trial_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, journal: _Optional[str] = ..., trial_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("trial_id", "age_ms")
    TRIAL_ID_FIELD_NUMBER: _ClassVar[int]
    AGE_MS_FIELD_NUMBER: _ClassVar[int]
    trial_id: int
    age_ms: int
    def __init__(self, trial_id: _Optional[int] = ..., age_ms: _Optional[int] = ...) -> None: ...

class GetHeartbeatsResponse(_message.Message):
    __slots__ = ("heartbeats", "server_time_ms")
    HEARTBEATS_FIELD_NUMBER: _ClassVar[int]
    SERVER_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    heartbeats: _containers.RepeatedCompositeFieldContainer[Heartbeat]
    server_time_ms: int
    def __init__(self, heartbeats: _Optional[_Iterable[_Union[Heartbeat, _Mapping]]] = ..., server_time_ms: _Optional[int] = ...) -> None: ...

class ArtifactInfo(_message.Message):
    __slots__ = ("artifact_id", "size", "sha256", "journal", "study", "trial_number", "created_ms", "version")
    ARTIFACT_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_FIELD_NUMBER: _ClassVar[int]
    STUDY_FIELD_NUMBER: _ClassVar[int]
    TRIAL_NUMBER_FIELD_NUMBER: _ClassVar[int]
    CREATED_MS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    artifact_id: str
    size: int
    sha256: bytes
    journal: str
    study: str
    trial_number: int
    created_ms: int
    version: str
    def __init__(self, artifact_id: _Optional[str] = ..., size: _Optional[int] = ..., sha256: _Optional[bytes] = ..., journal: _Optional[str] = ..., study: _Optional[str] = ..., trial_number: _Optional[int] = ..., created_ms: _Optional[int] = ..., version: _Optional[str] = ...) -> None: ...

class ArtifactChunk(_message.Message):
    __slots__ = ("info", "data", "sha256")
    INFO_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    info: ArtifactInfo
    data: bytes
    sha256: bytes
    def __init__(self, info: _Optional[_Union[ArtifactInfo, _Mapping]] = ..., data: _Optional[bytes] = ..., sha256: _Optional[bytes] = ...) -> None: ...

class DownloadArtifactRequest(_message.Message):
    __slots__ = ("artifact_id", "offset", "version")
    ARTIFACT_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    artifact_id: str
    offset: int
    version: str
    def __init__(self, artifact_id: _Optional[str] = ..., offset: _Optional[int] = ..., version: _Optional[str] = ...) -> None: ...

class DeleteArtifactRequest(_message.Message):
    __slots__ = ("artifact_id",)
    ARTIFACT_ID_FIELD_NUMBER: _ClassVar[int]
    artifact_id: str
    def __init__(self, artifact_id: _Optional[str] = ...) -> None: ...

class DeleteArtifactResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    def __init__(self, deleted: _Optional[bool] = ...) -> None: ...

class ListArtifactsRequest(_message.Message):
    __slots__ = ("journal", "study", "trial_number")
    JOURNAL_FIELD_NUMBER: _ClassVar[int]
    STUDY_FIELD_NUMBER: _ClassVar[int]
    TRIAL_NUMBER_FIELD_NUMBER: _ClassVar[int]
    journal: str
    study: str
    trial_number: int
    def __init__(self, journal: _Optional[str] = ..., study: _Optional[str] = ..., trial_number: _Optional[int] = ...) -> None: ...

class ListArtifactsResponse(_message.Message):
    __slots__ = ("artifacts",)
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    artifacts: _containers.RepeatedCompositeFieldContainer[ArtifactInfo]
    def __init__(self, artifacts: _Optional[_Iterable[_Union[ArtifactInfo, _Mapping]]] = ...) -> None: ...
