"""`optuna-grpc-storage dashboard`: optuna-dashboard on a user's studies through the proxy, seen
by a real browser (headless Chromium), live as trials are written.

The page is rendered by Chromium and its DOM checked for the trials; the screenshot is kept
in test-artifacts/dashboard.png. Chromium must be installed (`apt-get install chromium`;
.ci/run does it): without it the test is skipped, except where OGS_REQUIRE_BROWSER=1 (CI),
where it fails.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest

from optuna_grpc_storage import Controller

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1400,900")

if CHROMIUM is None:
    if os.environ.get("OGS_REQUIRE_BROWSER") == "1":
        raise RuntimeError("chromium is not installed but OGS_REQUIRE_BROWSER=1: "
                           "apt-get install -y chromium")
    pytestmark = pytest.mark.skip(reason="chromium is not installed (apt-get install chromium)")

optuna.logging.set_verbosity(optuna.logging.WARNING)


def render(url: str, profile: Path, screenshot: Path | None = None) -> str:
    """The DOM of `url` once its scripts have run (8 s of virtual time), and a screenshot."""
    shot = [f"--screenshot={screenshot}"] if screenshot else []
    result = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                             "--virtual-time-budget=8000", *shot, "--dump-dom", url],
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


class Dashboard(str):
    """The base URL, with the password the command printed."""

    password: str
    process: subprocess.Popen[str]
    banner: str  # the first line it printed

    def with_login(self, url: str) -> str:
        return url.replace("http://", f"http://me:{self.password}@", 1)

    def open(self, url: str, method: str = "GET", headers: dict[str, str] | None = None,
             login: bool = True) -> Any:
        auth = base64.b64encode(f"me:{self.password}".encode()).decode()
        request = urllib.request.Request(url, method=method, headers={
            **({"Authorization": f"Basic {auth}"} if login else {}), **(headers or {})})
        return urllib.request.urlopen(request, timeout=30)


def start_dashboard(proxy: Any, token: str, *args: str) -> Dashboard:
    env = {**os.environ, "OPTUNA_GRPC_STORAGE_ENDPOINT": proxy.endpoint,
           "OPTUNA_GRPC_STORAGE_TOKEN": token}
    process = subprocess.Popen([sys.executable, "-m", "optuna_grpc_storage.tools.cli", "dashboard",
                                "--port", "0", *args], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    first = process.stdout.readline() if process.stdout else ""
    assert " on http://" in first, first + (process.stderr.read() if process.stderr else "")
    second = process.stdout.readline() if process.stdout else ""
    found = re.search(r"the password (\S+) ", second)
    board = Dashboard(first.split(" on ")[1].split()[0].removesuffix("/dashboard"))
    board.password = found.group(1) if found else ""
    board.banner = first
    board.process = process
    return board


def stop_dashboard(board: Dashboard, token: str) -> None:
    board.process.terminate()
    assert board.process.wait(30) == 0  # SIGTERM stops it cleanly
    assert board.process.stderr is not None and token not in board.process.stderr.read()


@pytest.fixture
def dashboard(proxy, token) -> Iterator[Dashboard]:
    """The dashboard command on a free port; yields its base URL (and password)."""
    board = start_dashboard(proxy, token)
    try:
        yield board
    finally:
        stop_dashboard(board, token)


def api_trials(board: Dashboard, study_id: int) -> list[dict]:
    with board.open(f"{board}/api/studies/{study_id}") as response:
        return json.load(response)["trials"]


def test_the_dashboard_shows_a_real_study_live(make_storage, proxy, token, dashboard: str,
                                               tmp_path: Path) -> None:
    study = optuna.create_study(study_name="digits-svc", storage=make_storage())
    study.optimize(lambda t: (t.suggest_float("learning_rate", 1e-4, 1, log=True) - 0.1) ** 2
                   + t.suggest_int("layers", 1, 5), n_trials=12)
    # /study/<name>: the link the Controller's dashboard_url can point at.
    with dashboard.open(f"{dashboard}/study/digits-svc") as response:
        assert response.url == f"{dashboard}/dashboard/studies/{study._study_id}"
    with pytest.raises(urllib.error.HTTPError, match="404"):
        dashboard.open(f"{dashboard}/study/nope")
    controller = Controller(token, endpoint=proxy.endpoint,
                            dashboard_url=f"{dashboard}/study/{{study_name}}")
    link = controller.study("digits-svc").get_status()["dashboard_url"]
    with dashboard.open(link) as response:
        assert response.url.endswith(f"/dashboard/studies/{study._study_id}")

    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "dashboard.png"
    screenshot.unlink(missing_ok=True)
    page = f"{dashboard}/dashboard/studies/{study._study_id}/trials"
    dom = render(dashboard.with_login(page), tmp_path / "profile", screenshot)
    assert "digits-svc" in dom and "12 Trials" in dom
    assert all(f">Trial {n}<" in dom for n in range(12))
    assert "Best Trial" in dom and "learning_rate" in dom and "layers" in dom
    assert screenshot.stat().st_size > 10_000

    # Live: a trial written elsewhere shows up in the dashboard's API, then on the page.
    trial = study.ask()
    trial.suggest_float("learning_rate", 1e-4, 1, log=True)
    trial.suggest_int("layers", 1, 5)
    study.tell(trial, 0.5)
    told, seen = time.monotonic(), 0
    while time.monotonic() - told < 60:
        seen = len(api_trials(dashboard, study._study_id))
        if seen == 13:
            break
        time.sleep(0.05)
    assert seen == 13
    print(f"a new trial reached the dashboard's API {time.monotonic() - told:.2f}s after tell")
    assert "13 Trials" in render(dashboard.with_login(page), tmp_path / "profile2")


def png(width: int = 64, height: int = 48) -> bytes:
    """A real PNG (an RGB gradient), made here."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    rows = b"".join(b"\0" + b"".join(bytes((x * 4 % 256, y * 5 % 256, 128))
                                     for x in range(width)) for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


def test_an_uploaded_png_appears_on_the_trials_page(make_storage, proxy, token, dashboard: str,
                                                    tmp_path: Path) -> None:
    """The dashboard gets the proxy's artifact store: a PNG a trial uploaded is listed on the
    trial's page, shown as an image, and served byte for byte."""
    from optuna_grpc_storage import GrpcArtifactStore

    study = optuna.create_study(study_name="with-artifacts", storage=make_storage())
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    image = tmp_path / "confusion-matrix.png"
    image.write_bytes(png())
    artifact_id = optuna.artifacts.upload_artifact(
        artifact_store=GrpcArtifactStore(proxy.endpoint, token), study_or_trial=trial,
        file_path=str(image))
    study.tell(trial, 0.5)
    url = f"{dashboard}/artifacts/{study._study_id}/{trial._trial_id}/{artifact_id}"
    with dashboard.open(url) as response:
        assert response.headers["Content-Type"] == "image/png"
        assert response.read() == image.read_bytes()
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "dashboard-artifact.png"
    screenshot.unlink(missing_ok=True)
    page = f"{dashboard}/dashboard/studies/{study._study_id}/trials?numbers=0"
    dom = render(dashboard.with_login(page), tmp_path / "profile", screenshot)
    assert "confusion-matrix.png" in dom
    assert f'src="/artifacts/{study._study_id}/{trial._trial_id}/{artifact_id}"' in dom
    assert screenshot.stat().st_size > 10_000


# --- who may use it (issue 18) ---------------------------------------------------------------

def status_of(board: Dashboard, url: str, **kw: Any) -> int:
    try:
        with board.open(url, **kw) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


def test_without_the_login_the_page_and_the_api_answer_401(make_storage, dashboard: Dashboard,
                                                           tmp_path: Path) -> None:
    study = optuna.create_study(study_name="locked", storage=make_storage())
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    for path in ("/dashboard", f"/dashboard/studies/{study._study_id}", "/api/studies",
                 f"/api/studies/{study._study_id}", "/study/locked"):
        assert status_of(dashboard, f"{dashboard}{path}", login=False) == 401, path
    with pytest.raises(urllib.error.HTTPError) as refused:
        dashboard.open(f"{dashboard}/api/studies", login=False)
    assert refused.value.headers["WWW-Authenticate"].startswith("Basic ")
    wrong = Dashboard(dashboard)
    wrong.password = "not-the-password"
    assert status_of(wrong, f"{dashboard}/api/studies") == 401
    # Chromium without a login sees no study; with it, the study shows.
    page = f"{dashboard}/dashboard/studies/{study._study_id}/trials"
    assert "locked" not in render(page, tmp_path / "anonymous")
    dom = render(dashboard.with_login(page), tmp_path / "logged-in")
    assert "locked" in dom and "2 Trials" in dom


def test_the_token_is_a_password_too(proxy, token: str, dashboard: Dashboard) -> None:
    by_token = Dashboard(dashboard)
    by_token.password = token
    assert status_of(by_token, f"{dashboard}/api/studies") == 200


def test_a_forged_origin_cannot_delete_and_a_foreign_host_is_refused(
        make_storage, dashboard: Dashboard) -> None:
    storage = make_storage()
    study = optuna.create_study(study_name="keep-me", storage=storage)
    url = f"{dashboard}/api/studies/{study._study_id}"
    assert status_of(dashboard, url, method="DELETE",
                     headers={"Origin": "http://evil.example"}) == 403
    assert status_of(dashboard, url, method="DELETE", headers={"Origin": "null"}) == 403
    assert status_of(dashboard, url, method="DELETE",
                     headers={"Referer": "http://evil.example/page"}) == 403
    assert status_of(dashboard, f"{dashboard}/api/studies",
                     headers={"Host": "evil.example"}) == 403
    assert status_of(dashboard, url, method="DELETE", headers={
        "Host": "evil.example", "Origin": "http://evil.example"}) == 403
    assert "keep-me" in [s.study_name for s in optuna.get_all_study_summaries(storage)]
    # The page itself (same origin, as the browser sends it) may delete.
    assert status_of(dashboard, url, method="DELETE", headers={"Origin": dashboard}) == 204
    assert "keep-me" not in [s.study_name for s in
                             optuna.get_all_study_summaries(make_storage())]


def test_read_only_refuses_every_change(make_storage, proxy, token: str) -> None:
    study = optuna.create_study(study_name="read-only", storage=make_storage())
    board = start_dashboard(proxy, token, "--read-only")
    try:
        url = f"{board}/api/studies/{study._study_id}"
        assert status_of(board, url) == 200
        assert status_of(board, url, method="DELETE", headers={"Origin": board}) == 403
        assert status_of(board, f"{board}/api/studies", method="POST",
                         headers={"Origin": board, "Content-Type": "application/json"}) == 403
    finally:
        stop_dashboard(board, token)
    assert "read-only" in [s.study_name for s in optuna.get_all_study_summaries(make_storage())]


def test_allowed_hosts_and_the_read_only_token_hook() -> None:
    import types

    from optuna_grpc_storage.protocol.v1 import journal_pb2 as pb
    from optuna_grpc_storage.tools.dashboard_guard import allowed_hosts, token_is_read_only

    assert allowed_hosts("127.0.0.1") == {"localhost", "127.0.0.1", "::1"}
    assert "studies.example.com" in allowed_hosts("0.0.0.0", ["Studies.Example.com:8080"])
    assert "0.0.0.0" not in allowed_hosts("0.0.0.0")
    assert token_is_read_only(pb.WhoAmIResponse()) is False  # the proxy says nothing
    # What a proxy with scoped tokens answers (the WhoAmI `scope` field)
    assert token_is_read_only(types.SimpleNamespace(scope=types.SimpleNamespace(
        read_only=True))) is True


def test_a_read_only_token_makes_the_dashboard_read_only(redis_server, new_user, proxy) -> None:
    """No --read-only flag: the proxy's WhoAmI says the token is read-only, so the dashboard
    refuses every change (the proxy would refuse the writes anyway, with PERMISSION_DENIED)."""
    from optuna_grpc_storage import GrpcJournalStorage
    from optuna_grpc_storage.protocol.scopes import Scope
    from tests.conftest import issue_token

    user, writer = new_user()
    study = optuna.create_study(study_name="kept", storage=GrpcJournalStorage(
        proxy.endpoint, token=writer))
    reader = issue_token(redis_server.url, user, scope=Scope(read_only=True))
    board = start_dashboard(proxy, reader)
    try:
        assert board.banner.rstrip().endswith("(read-only)"), board.banner
        url = f"{board}/api/studies/{study._study_id}"
        assert status_of(board, url) == 200
        assert status_of(board, url, method="DELETE", headers={"Origin": board}) == 403
    finally:
        stop_dashboard(board, reader)
    assert [s.study_name for s in optuna.get_all_study_summaries(
        GrpcJournalStorage(proxy.endpoint, token=writer))] == ["kept"]
