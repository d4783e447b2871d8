"""Load test: simulated trial Pods play Optuna's real access pattern against a running proxy,
then the journals are checked entry by entry.

    OPTUNA_GRPC_STORAGE_TOKEN=ogs_... \\
        locust -f loadtests/locustfile.py --headless -u 1000 -r 100 -t 60s --host 127.0.0.1:13000

(`make loadtest` starts a Redis and a proxy, issues a token and runs exactly that.)

Each locust user is one trial Pod running RandomSampler trials the way Optuna's JournalStorage
on GrpcJournalBackend drives the proxy (measured with `python loadtests/pattern.py`: per trial
1 ReadLogs and 2 + params AppendLogs of one entry each, 145, ~287 and ~188 bytes):

    AppendLogs CREATE_TRIAL, AppendLogs SET_TRIAL_PARAM x params   (each returns unseen entries)
    ... the objective runs (LOAD_OBJECTIVE_SECONDS) ...
    ReadLogs from the Pod's position          (Optuna syncs before tell: the read went stale)
    AppendLogs SET_TRIAL_STATE_VALUES

Every append carries known_position and the idempotency key (client_id, sequence); failed
attempts are retried with the same key, as the client does, and each failed attempt counts as
a locust failure. Pods are grouped into studies of LOAD_PODS_PER_STUDY, one journal each.

At test stop every journal is read back and checked: each acknowledged append present exactly
once, at the position it was acknowledged with, each Pod's appends in its order. Anything
lost, doubled or out of order makes locust exit with code 1 (as does any failed request).

Settings (environment): OPTUNA_GRPC_STORAGE_TOKEN, LOAD_OBJECTIVE_SECONDS (mean time a trial's
objective takes, default 2.0), LOAD_PODS_PER_STUDY (50), LOAD_PARAMS (2). Run it in one
process (no --processes / distributed mode): the check needs every Pod's ledger.
"""

from __future__ import annotations

import collections
import datetime
import hashlib
import json
import logging
import os
import random
import time
import uuid
from typing import Any

import grpc.experimental.gevent as grpc_gevent

grpc_gevent.init_gevent()  # after locust's monkey patching, before any gRPC object

import gevent  # noqa: E402
import grpc  # noqa: E402
from locust import User, constant, events, task  # noqa: E402
from locust.env import Environment  # noqa: E402

from optuna_grpc_storage.protocol.errors import RETRY_AFTER_KEY  # noqa: E402
from optuna_grpc_storage.protocol.v1 import journal_pb2 as pb  # noqa: E402
from optuna_grpc_storage.protocol.v1 import journal_pb2_grpc  # noqa: E402
from optuna_grpc_storage.storage.connection import TOKEN_ENV, parse_endpoint  # noqa: E402

log = logging.getLogger("loadtest")

OBJECTIVE_SECONDS = float(os.environ.get("LOAD_OBJECTIVE_SECONDS", "2.0"))
PODS_PER_STUDY = int(os.environ.get("LOAD_PODS_PER_STUDY", "50"))
PARAMS = int(os.environ.get("LOAD_PARAMS", "2"))
TIMEOUT, RETRY_DEADLINE = 30.0, 60.0
THROTTLED = [0]  # attempts the proxy asked to retry later (per-user limits), waited out
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
             grpc.StatusCode.ABORTED, grpc.StatusCode.CANCELLED}
RUN = time.strftime("%H%M%S") + "-" + uuid.uuid4().hex[:6]
DISTRIBUTION = json.dumps({"name": "FloatDistribution", "attributes": {
    "step": None, "low": -10.0, "high": 10.0, "log": False}})
CREATE_TRIAL = b'"op_code":4,'


def dumps(entry: dict[str, Any]) -> bytes:
    return json.dumps(entry, separators=(",", ":")).encode()  # as GrpcJournalBackend does


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


def digest(entry: bytes) -> bytes:
    return hashlib.blake2b(entry, digest_size=12).digest()


class Ledger:
    """What every Pod was told: journal -> client -> [(sequence, position, entry digest)]."""

    def __init__(self) -> None:
        self.acked: dict[str, dict[str, list[tuple[int, int, bytes]]]] = (
            collections.defaultdict(lambda: collections.defaultdict(list)))
        self.studies: dict[str, bytes] = {}  # journal -> digest of its CREATE_STUDY entry

    def record(self, journal: str, client: str, sequence: int, position: int,
               entry: bytes) -> None:
        self.acked[journal][client].append((sequence, position, digest(entry)))


LEDGER = Ledger()


def metadata() -> tuple[tuple[str, str], ...]:
    token = os.environ.get(TOKEN_ENV)
    return (("authorization", f"Bearer {token}"),) if token else ()


def journal_of(pod_index: int) -> str:
    return f"load-{RUN}-{pod_index // PODS_PER_STUDY}"


class TrialPod(User):
    """One trial Pod: its own channel, identity and position in its study's journal."""

    wait_time = constant(0)  # the pacing is the objective's run time, inside the task
    _count = 0

    def on_start(self) -> None:
        target, tls = parse_endpoint(self.host or "127.0.0.1:13000")
        if tls:
            raise ValueError("the load test speaks plaintext h2c; give host:port")
        self.channel = grpc.insecure_channel(target)
        self.stub = journal_pb2_grpc.JournalServiceStub(self.channel)
        self.metadata = metadata()
        TrialPod._count += 1
        self.journal = journal_of(TrialPod._count - 1)
        self.client_id = uuid.uuid4().hex
        self.worker_id = f"{uuid.uuid4()}-{random.randrange(10**14, 10**15)}"
        self.sequence = 0
        self.position = 0  # entries [0, position) are known to this Pod
        self.trials_seen = 0  # CREATE_TRIAL entries among them: the next trial's id
        self.read()  # load_study: replay the journal so far

    def on_stop(self) -> None:
        self.channel.close()

    # -- calls, reported to locust -----------------------------------------------------------

    def call(self, name: str, attempt: Any) -> Any:
        """Run attempt() until it succeeds or fails for good, like Connection.call; every
        attempt is one locust request, but one the proxy refused for now with a retry hint
        (a per-user limit: all these Pods are one user) is waited out, as the client does."""
        deadline = time.monotonic() + RETRY_DEADLINE
        delay = 0.05
        while True:
            started = time.perf_counter()
            try:
                result, size = attempt()
            except grpc.RpcError as e:
                hint = dict(e.trailing_metadata() or ()).get(RETRY_AFTER_KEY)
                if hint is not None and time.monotonic() < deadline:
                    THROTTLED[0] += 1
                    gevent.sleep(int(hint) / 1000 * random.uniform(1.0, 1.25))
                    continue
                self.environment.events.request.fire(
                    request_type="grpc", name=name, response_length=0, exception=e,
                    response_time=(time.perf_counter() - started) * 1000, context={})
                if e.code() not in RETRYABLE or time.monotonic() + delay > deadline:
                    raise
                gevent.sleep(random.uniform(0, delay))
                delay = min(delay * 2, 2.0)
                continue
            self.environment.events.request.fire(
                request_type="grpc", name=name, response_length=size, exception=None,
                response_time=(time.perf_counter() - started) * 1000, context={})
            return result

    def read(self, max_entries: int = 0) -> None:
        def attempt() -> tuple[None, int]:
            size = 0
            request = pb.ReadLogsRequest(journal=self.journal, position=self.position,
                                         max_entries=max_entries)
            for chunk in self.stub.ReadLogs(request, timeout=TIMEOUT, metadata=self.metadata):
                self.learn(chunk.entries)
                size += sum(len(e) for e in chunk.entries)
            return None, size

        self.call("ReadLogs", attempt)

    def learn(self, entries: Any) -> None:
        self.position += len(entries)
        self.trials_seen += sum(CREATE_TRIAL in e for e in entries)

    def append(self, entry: bytes) -> int:
        """Append one entry; returns its position. Learns the entries before it."""
        self.sequence += 1
        request = pb.AppendLogsRequest(journal=self.journal, entries=[entry],
                                       client_id=self.client_id, sequence=self.sequence,
                                       known_position=self.position)

        def attempt() -> tuple[pb.AppendLogsResponse, int]:
            r = self.stub.AppendLogs(request, timeout=TIMEOUT, metadata=self.metadata)
            return r, len(entry) + sum(len(e) for e in r.unseen)

        response = self.call("AppendLogs", attempt)
        first = response.first_position
        LEDGER.record(self.journal, self.client_id, self.sequence, first, entry)
        if response.unseen_complete:
            self.learn(response.unseen)
        else:  # too far behind for an inline answer
            self.read(max_entries=first - self.position)
        self.learn([entry])
        return first

    # -- the trial ---------------------------------------------------------------------------

    @task
    def trial(self) -> None:
        self.append(dumps({"op_code": 4, "worker_id": self.worker_id, "study_id": 0,
                           "datetime_start": now()}))
        trial_id = self.trials_seen - 1  # creations before ours, in the journal's order
        values = []
        for i in range(PARAMS):
            value = random.uniform(-10, 10)
            values.append(value)
            self.append(dumps({"op_code": 5, "worker_id": self.worker_id,
                               "trial_id": trial_id, "param_name": f"x{i}",
                               "param_value_internal": value, "distribution": DISTRIBUTION}))
        gevent.sleep(random.uniform(0.5, 1.5) * OBJECTIVE_SECONDS)  # the objective runs
        self.read()
        self.append(dumps({"op_code": 6, "worker_id": self.worker_id, "trial_id": trial_id,
                           "state": 1, "values": [sum(v * v for v in values)],
                           "datetime_complete": now()}))


# -- set-up and the integrity check ----------------------------------------------------------

def stub_for(environment: Environment) -> tuple[grpc.Channel, Any]:
    target, _ = parse_endpoint(environment.host or "127.0.0.1:13000")
    channel = grpc.insecure_channel(target)
    return channel, journal_pb2_grpc.JournalServiceStub(channel)


@events.test_start.add_listener
def create_studies(environment: Environment, **_: Any) -> None:
    """One study per journal, created before the Pods arrive (as a notebook would)."""
    users = getattr(environment.parsed_options, "num_users", None) or 1
    channel, stub = stub_for(environment)
    try:
        with channel:
            for k in range((users + PODS_PER_STUDY - 1) // PODS_PER_STUDY):
                journal = f"load-{RUN}-{k}"
                entry = dumps({"op_code": 0, "worker_id": f"setup-{RUN}",
                               "study_name": journal, "directions": [1]})
                stub.AppendLogs(pb.AppendLogsRequest(journal=journal, entries=[entry]),
                                timeout=TIMEOUT, metadata=metadata())
                LEDGER.studies[journal] = digest(entry)
    except grpc.RpcError as e:
        log.error("cannot create the studies at %s: %s: %s (token from %s)",
                  environment.host, e.code().name, e.details(), TOKEN_ENV)
        environment.process_exit_code = 1
        if environment.runner is not None:
            gevent.spawn(environment.runner.quit)
        return
    log.info("load test run %s: %d Pods per study, %d params, objective %.1fs",
             RUN, PODS_PER_STUDY, PARAMS, OBJECTIVE_SECONDS)


def check_journal(stub: Any, journal: str, clients: dict[str, list[tuple[int, int, bytes]]],
                  counts: collections.Counter[str]) -> None:
    stored = [digest(e) for c in stub.ReadLogs(pb.ReadLogsRequest(journal=journal),
                                               timeout=600, metadata=metadata())
              for e in c.entries]
    occurrences = collections.Counter(stored)
    counts["entries stored"] += len(stored)
    counts["doubled"] += sum(n - 1 for n in occurrences.values() if n > 1)
    counts["studies missing"] += int(occurrences[LEDGER.studies.get(journal, b"")] != 1)
    known = {LEDGER.studies.get(journal)}
    for appends in clients.values():
        positions = []
        for _, position, d in sorted(appends):
            known.add(d)
            counts["appends acknowledged"] += 1
            if occurrences[d] == 0:
                counts["lost"] += 1
            elif position >= len(stored) or stored[position] != d:
                counts["misplaced"] += 1
            positions.append(position)
        counts["out of order"] += int(positions != sorted(positions))
    # Entries nobody was told about: appends in flight when the test stopped (not a loss).
    counts["present but unacknowledged"] += sum(1 for d in stored if d not in known)


@events.test_stop.add_listener
def check_integrity(environment: Environment, **_: Any) -> None:
    if not LEDGER.studies:
        return  # the set-up failed and said so
    counts: collections.Counter[str] = collections.Counter()
    channel, stub = stub_for(environment)
    try:
        with channel:
            for journal in sorted(set(LEDGER.studies) | set(LEDGER.acked)):
                check_journal(stub, journal, LEDGER.acked.get(journal, {}), counts)
    except grpc.RpcError as e:
        log.error("integrity check could not read the journals: %s %s", e.code(), e.details())
        environment.process_exit_code = 1
        return
    bad = {k: counts[k] for k in ("lost", "doubled", "misplaced", "out of order",
                                  "studies missing") if counts[k]}
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    if bad:
        log.error("INTEGRITY CHECK FAILED: %s (%s)", bad, summary)
        environment.process_exit_code = 1
    else:
        log.info("integrity check passed: %d journals; %s",
                 len(LEDGER.studies), summary)
    if THROTTLED[0]:
        log.info("%d attempts were refused for a moment by per-user limits and retried after "
                 "the proxy's hint", THROTTLED[0])
