"""A gRPC channel to the proxy that survives pickle and fork, retries what is safe to retry and
turns failures into errors a person can act on."""

from __future__ import annotations

import contextvars
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import grpc

from optuna_grpc_storage.protocol.errors import RETRY_AFTER_KEY
from optuna_grpc_storage.protocol.v1 import journal_pb2_grpc
from optuna_grpc_storage.storage import fork
from optuna_grpc_storage.storage.errors import (
    AuthenticationError,
    GrpcStorageError,
    ProxyUnavailableError,
    RequestRejectedError,
)
from optuna_grpc_storage.storage.tls import (
    PEM,
    TLS_CA_ENV,
    TLS_CERT_ENV,
    TLS_KEY_ENV,
    ClientTLS,
)

ENDPOINT_ENV = "OPTUNA_GRPC_STORAGE_ENDPOINT"
TOKEN_ENV = "OPTUNA_GRPC_STORAGE_TOKEN"
DEFAULT_PORT = 13000
MAX_MESSAGE_BYTES = 64 << 20

# Every call of the service is safe to repeat: reads are reads, and appends carry an
# idempotency key. These codes mean "the call may not have happened; try again". CANCELLED is
# among them because this client never cancels a call itself: it comes from a proxy that is
# draining (SIGTERM), which refuses calls that reach it after shutdown began with CANCELLED.
RETRYABLE = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED,
     grpc.StatusCode.CANCELLED}
)
REJECTED = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.NOT_FOUND,
    }
)
T = TypeVar("T")


def resolve(endpoint: str | None, token: str | None) -> tuple[str, str | None]:
    """The endpoint and token to use: the arguments, else the environment. ValueError when
    there is no endpoint at all (no token is allowed: a proxy may run with --auth none), or
    when the token cannot be sent (white space around it, from a file or a Secret, is
    dropped)."""
    endpoint = endpoint or os.environ.get(ENDPOINT_ENV)
    if not endpoint:
        raise ValueError(f"no proxy endpoint: set {ENDPOINT_ENV}=host:13000 (or pass "
                         "endpoint= in Python, --endpoint to optuna-grpc-storage)")
    token = (token if token is not None else os.environ.get(TOKEN_ENV) or "").strip() or None
    if token is not None and not all("!" <= c <= "~" for c in token):
        raise ValueError("the token has spaces or characters a gRPC header cannot carry: it is "
                         "the last line `storage-proxy token issue` printed, ogs_ and 50-odd "
                         "letters, digits, '-' and '_'")
    return endpoint, token


TLS_SCHEMES = {"grpcs://": DEFAULT_PORT, "https://": 443}
PLAIN_SCHEMES = {"grpc://": DEFAULT_PORT, "http://": 80}


_SHIPPING: contextvars.ContextVar[bool] = contextvars.ContextVar("ogs_shipping", default=False)


@contextmanager
def without_secrets() -> Iterator[None]:
    """While pickling something that leaves this machine's processes (the objective a launcher
    ships to workers): every Connection in it pickles without its token and client key, and
    takes them from the environment where it is unpickled (OPTUNA_GRPC_STORAGE_TOKEN, _TLS_*;
    a launcher puts them there, from a Secret). Plain pickling (multiprocessing, n_jobs)
    keeps them."""
    reset = _SHIPPING.set(True)
    try:
        yield
    finally:
        _SHIPPING.reset(reset)


def shipping() -> bool:
    return _SHIPPING.get()


def parse_endpoint(endpoint: str) -> tuple[str, bool]:
    """'host:port', 'host', 'grpc://host:port', 'grpcs://host:port' or 'https://host[:443]'
    -> (target, TLS asked by the scheme). gRPC target syntax such as 'dns:///host:port'
    passes through unchanged."""
    tls, port = False, DEFAULT_PORT
    for scheme, default in {**TLS_SCHEMES, **PLAIN_SCHEMES}.items():
        if endpoint.startswith(scheme):
            endpoint, tls, port = endpoint[len(scheme):].rstrip("/"), scheme in TLS_SCHEMES, \
                default
            break
    if "://" not in endpoint and ":" not in endpoint.rsplit("]", 1)[-1]:
        endpoint = f"{endpoint}:{port}"
    return endpoint, tls


def use_tls(endpoint: str, tls: ClientTLS) -> bool:
    """TLS for grpcs:// and https://, and for a bare host:port once a CA or a client
    certificate is given (plaintext otherwise); grpc:// or http:// with TLS settings is a
    mistake, said at once."""
    if endpoint.startswith(tuple(PLAIN_SCHEMES)) and tls.configured:
        raise ValueError(f"{endpoint!r} asks for plaintext but TLS settings are given "
                         f"(tls_ca/tls_cert or ${TLS_CA_ENV}/${TLS_CERT_ENV}): use "
                         "grpcs://host:port")
    return parse_endpoint(endpoint)[1] or tls.configured


def retry_hint(e: grpc.RpcError) -> float | None:
    """Seconds the proxy asked the caller to wait before retrying (`retry-after-ms` trailing
    metadata, or the field of a Session error), or None: not a refusal that passes."""
    found = getattr(e, "retry_after", None)
    if found is None and hasattr(e, "trailing_metadata"):
        for key, value in e.trailing_metadata() or ():
            if key == RETRY_AFTER_KEY:
                found = int(value) / 1000
    return found


class Connection:
    """Endpoint, token and policy; the channel itself is made lazily, per process."""

    def __init__(
        self,
        endpoint: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        retry_deadline: float = 60.0,
        root_certificates: bytes | None = None,
        tls_ca: PEM | None = None,
        tls_cert: PEM | None = None,
        tls_key: PEM | None = None,
    ) -> None:
        self.endpoint, self.token = resolve(endpoint, token)
        self.target = parse_endpoint(self.endpoint)[0]
        self.tls_config = ClientTLS.resolve(tls_ca if tls_ca is not None else root_certificates,
                                            tls_cert, tls_key)
        self.tls = use_tls(self.endpoint, self.tls_config)
        self.timeout = timeout
        self.retry_deadline = retry_deadline
        self._init_local_state()
        fork.track(self)

    def _init_local_state(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._channel: grpc.Channel | None = None
        self._stub: journal_pb2_grpc.JournalServiceStub | None = None
        self._artifact_stub: journal_pb2_grpc.ArtifactServiceStub | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for key in ("_pid", "_lock", "_channel", "_stub", "_artifact_stub"):
            del state[key]
        if shipping():  # to a cluster or a file: the secrets come from where it lands
            state["token"], state["_secrets_from_environment"] = None, True
            state["tls_config"] = ClientTLS(self.tls_config.ca)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if state.pop("_secrets_from_environment", False):
            state["token"] = os.environ.get(TOKEN_ENV) or None
            state["tls_config"] = ClientTLS.resolve(state["tls_config"].ca)
        self.__dict__.update(state)
        self._init_local_state()
        fork.track(self)

    def _fork_close(self) -> bool:
        """Before a fork, once the streams are dropped: close the channel, which cancels every
        call on it and returns once gRPC has delivered their ends (fork.py)."""
        with self._lock:
            channel, self._channel, self._stub = self._channel, None, None
            self._artifact_stub = None
        if channel is not None and self._pid == os.getpid():
            channel.close()
            return True
        return False

    def _fork_child(self) -> None:
        self._init_local_state()  # the parent's channel is closed; never touch it

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    @property
    def stub(self) -> journal_pb2_grpc.JournalServiceStub:
        if self._pid != os.getpid():
            # A forked child must not touch the parent's channel; it makes its own.
            self._init_local_state()
        with self._lock:
            if self._stub is None:
                if fork.forking():
                    raise fork.ForkInProgress()
                self._channel = self._make_channel()
                fork.install()  # after gRPC's own at-fork hooks: see fork.install
                self._stub = journal_pb2_grpc.JournalServiceStub(self._channel)
            return self._stub

    @property
    def artifact_stub(self) -> journal_pb2_grpc.ArtifactServiceStub:
        """The artifact service, on the same channel."""
        self.stub  # noqa: B018 (makes the channel)
        with self._lock:
            if self._artifact_stub is None:
                self._artifact_stub = journal_pb2_grpc.ArtifactServiceStub(self._channel)
            return self._artifact_stub

    def _make_channel(self) -> grpc.Channel:
        options = [
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.enable_retries", 0),  # retries are ours, with idempotency keys
            ("grpc.service_config", '{"loadBalancingConfig": [{"round_robin": {}}]}'),
        ]
        if self.tls:
            return grpc.secure_channel(self.target, self.tls_config.credentials(),
                                       options=options)
        return grpc.insecure_channel(self.target, options=options)

    def close(self) -> None:
        with self._lock:
            if self._channel is not None and self._pid == os.getpid():
                self._channel.close()
            self._channel = self._stub = self._artifact_stub = None

    def call(self, what: str, attempt: Callable[[journal_pb2_grpc.JournalServiceStub], T]) -> T:
        """Run attempt(stub) until it succeeds, retrying transient failures with capped
        exponential backoff and jitter until retry_deadline; raise a translated error. A
        refusal with a retry hint (a per-user limit of the proxy) waits at least the hint."""
        deadline = time.monotonic() + self.retry_deadline
        delay = 0.05
        while True:
            try:
                with fork.calling():  # a fork waits for this attempt; a retry waits for it
                    return attempt(self.stub)
            except ValueError as e:
                # The channel was closed between taking the stub and invoking it (a fork
                # closes every channel, calls in flight included): like CANCELLED, retry on
                # the new channel the next attempt makes.
                if "Channel closed" not in str(e) or time.monotonic() > deadline:
                    raise
                pause = random.uniform(0, delay)
            except grpc.RpcError as e:
                code = e.code() if hasattr(e, "code") else grpc.StatusCode.UNKNOWN
                hint = retry_hint(e)
                pause = random.uniform(0, delay)
                if hint is not None:
                    pause = max(pause, hint * random.uniform(1.0, 1.25))
                elif code not in RETRYABLE:
                    raise self._translate(what, e) from None
                if time.monotonic() + pause > deadline:
                    raise self._translate(what, e) from None
            time.sleep(pause)
            delay = min(delay * 2, 2.0)

    def _tls_hint(self, details: str) -> str:
        """What to check when the failure looks like TLS: a failed handshake, or a socket the
        proxy closed at once (what a TLS proxy does to plaintext, and an mTLS proxy to a
        client without a certificate)."""
        lowered = details.lower()
        handshake = any(w in lowered for w in ("ssl", "handshake", "certificate", "tsi"))
        closed = "socket closed" in lowered
        if not self.tls:
            return ("; this client speaks plaintext: if the proxy runs with --tls-cert, use "
                    "grpcs://host:port") if closed else ""
        hints = []
        if handshake:
            hints.append(f"the CA bundle (tls_ca, ${TLS_CA_ENV}) must have signed the "
                         "proxy's certificate for this host name")
        if (handshake or closed) and self.tls_config.cert is None:
            hints.append("a proxy with --tls-client-ca wants a client certificate "
                         f"(tls_cert/tls_key, ${TLS_CERT_ENV}/${TLS_KEY_ENV})")
        return "; TLS: " + "; ".join(hints) if hints else ""

    def _translate(self, what: str, e: grpc.RpcError) -> GrpcStorageError:
        code = e.code() if hasattr(e, "code") else grpc.StatusCode.UNKNOWN
        details = (e.details() if hasattr(e, "details") else None) or code.name
        if code == grpc.StatusCode.UNAUTHENTICATED and not self.token:
            return AuthenticationError(
                f"the storage proxy at {self.target} needs a token and none was given: set "
                f"{TOKEN_ENV} (or pass token= in Python, --token to optuna-grpc-storage); "
                "your operator issues one with `storage-proxy token issue --user NAME`")
        if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            return AuthenticationError(
                f"the storage proxy at {self.target} refused the call: {details}")
        if code in RETRYABLE:
            return ProxyUnavailableError(
                f"{what}: could not reach the storage proxy at {self.target} for "
                f"{self.retry_deadline:.0f}s ({code.name}: {details}); check that "
                "`storage-proxy serve` runs there and that this machine can reach it"
                + self._tls_hint(details)
            )
        if code in REJECTED:
            return RequestRejectedError(f"{what} refused by {self.target}: {details}")
        return GrpcStorageError(f"{what} failed at {self.target}: {code.name}: {details}")
