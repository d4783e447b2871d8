"""`optuna-grpc-storage dashboard`: optuna-dashboard on a user's studies through the proxy, seen
by a real browser (headless Chromium), live as trials are written.

The page is rendered by Chromium and its DOM checked for the trials; the screenshot is kept
in test-artifacts/dashboard.png. Chromium must be installed (`apt-get install chromium`;
.ci/run does it): without it the test is skipped, except where OGS_REQUIRE_BROWSER=1 (CI),
where it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

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


@pytest.fixture
def dashboard(proxy, token) -> Iterator[str]:
    """The dashboard command on a free port; yields its base URL."""
    env = {**os.environ, "OPTUNA_GRPC_STORAGE_ENDPOINT": proxy.endpoint,
           "OPTUNA_GRPC_STORAGE_TOKEN": token}
    process = subprocess.Popen([sys.executable, "-m", "optuna_grpc_storage.tools.cli", "dashboard",
                                "--port", "0"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        first = process.stdout.readline()
        assert " on http://" in first, first + process.stderr.read()
        yield first.split(" on ")[1].strip().removesuffix("/dashboard")
    finally:
        process.terminate()
        assert process.wait(30) == 0  # SIGTERM stops it cleanly
        assert token not in process.stderr.read()


def api_trials(base: str, study_id: int) -> list[dict]:
    with urllib.request.urlopen(f"{base}/api/studies/{study_id}", timeout=30) as response:
        return json.load(response)["trials"]


def test_the_dashboard_shows_a_real_study_live(make_storage, proxy, token, dashboard: str,
                                               tmp_path: Path) -> None:
    study = optuna.create_study(study_name="digits-svc", storage=make_storage())
    study.optimize(lambda t: (t.suggest_float("learning_rate", 1e-4, 1, log=True) - 0.1) ** 2
                   + t.suggest_int("layers", 1, 5), n_trials=12)
    # /study/<name>: the link the Controller's dashboard_url can point at.
    with urllib.request.urlopen(f"{dashboard}/study/digits-svc", timeout=30) as response:
        assert response.url == f"{dashboard}/dashboard/studies/{study._study_id}"
    with pytest.raises(urllib.error.HTTPError, match="404"):
        urllib.request.urlopen(f"{dashboard}/study/nope", timeout=30)
    controller = Controller(token, endpoint=proxy.endpoint,
                            dashboard_url=f"{dashboard}/study/{{study_name}}")
    link = controller.study("digits-svc").get_status()["dashboard_url"]
    with urllib.request.urlopen(link, timeout=30) as response:
        assert response.url.endswith(f"/dashboard/studies/{study._study_id}")

    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "dashboard.png"
    screenshot.unlink(missing_ok=True)
    page = f"{dashboard}/dashboard/studies/{study._study_id}/trials"
    dom = render(page, tmp_path / "profile", screenshot)
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
    assert "13 Trials" in render(page, tmp_path / "profile2")


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
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.headers["Content-Type"] == "image/png"
        assert response.read() == image.read_bytes()
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "dashboard-artifact.png"
    screenshot.unlink(missing_ok=True)
    page = f"{dashboard}/dashboard/studies/{study._study_id}/trials?numbers=0"
    dom = render(page, tmp_path / "profile", screenshot)
    assert "confusion-matrix.png" in dom
    assert f'src="/artifacts/{study._study_id}/{trial._trial_id}/{artifact_id}"' in dom
    assert screenshot.stat().st_size > 10_000
