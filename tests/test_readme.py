"""The README's first screen runs as written (issue 17, items 4 and 9): "The first ten
minutes" block by block, as a newcomer types them into two terminals, then the quick start.

What the test cannot do as written, and does instead: `make install` (no network here) is a
shell function that checks the target exists, and `.venv` is the suite's own environment;
the proxy listens on a free port rather than 13000 (STORAGE_PROXY_PORT, and the blocks'
13000 replaced by it), with its metrics on a free port too, since this machine is shared.
Everything else, commands and Python alike, runs verbatim.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from storage_proxy.process.embedded_redis import free_port

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
MAKE = f"""make() {{
  for target in "$@"; do
    grep -q "^$target:" {ROOT / "Makefile"} || {{ echo "no make target $target" >&2; return 2; }}
  done
}}
"""


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end >= 0 else None]


def blocks(text: str) -> list[tuple[str, str]]:
    """(language, code) of each fenced block, in order."""
    return re.findall(r"```(\w+)\n(.*?)```", text, re.S)


def test_every_make_target_of_the_first_screen_exists() -> None:
    first_screen = README[:README.index("\n## Quick start")]
    targets = re.findall(r"^make (\w+)", first_screen, re.M)
    assert {"run", "test", "install"} <= set(targets)
    makefile = (ROOT / "Makefile").read_text()
    for target in targets:
        assert re.search(rf"^{target}:", makefile, re.M), target


def test_the_first_ten_minutes_run_as_written(tmp_path) -> None:
    found = blocks(section("The first ten minutes"))
    assert [lang for lang, _ in found] == ["sh", "sh", "python", "python", "sh"]
    (_, terminal_1), *rest = found
    quick_start = next(code for lang, code in blocks(section(
        "Quick start: a distributed study from a notebook")) if lang == "python")
    port = free_port()
    (tmp_path / ".venv").symlink_to(sys.prefix)  # what `make install` made
    env = {k: v for k, v in os.environ.items() if not k.startswith(
        ("OPTUNA_GRPC_STORAGE_", "STORAGE_PROXY_", "VIRTUAL_ENV"))}
    log = tmp_path / "terminal-1.log"
    with open(log, "wb") as out:
        first = subprocess.Popen(
            ["bash", "-e", "-c", MAKE + terminal_1], cwd=tmp_path, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
            env={**env, "STORAGE_PROXY_PORT": str(port), "STORAGE_PROXY_METRICS_PORT": "0"})
    try:
        deadline = time.monotonic() + 60
        while "listening on" not in log.read_text(errors="replace"):
            assert first.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        script = [MAKE]
        for i, (lang, code) in enumerate([*rest, ("python", quick_start)]):
            code = code.replace("13000", str(port))
            if lang == "python":
                (tmp_path / f"block{i}.py").write_text(code)
                script.append(f"python block{i}.py")
            else:
                script.append(code)
        script.append("optuna-grpc-storage status --json")  # the test's own look
        second = subprocess.run(["bash", "-e", "-c", "\n".join(script)], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=600)
        assert second.returncode == 0, second.stdout + second.stderr
        studies = {s["study_name"]: s for s in json.loads(second.stdout.splitlines()[-1])}
        assert {n: (s["count_succeeded"], s["count_total"]) for n, s in studies.items()} == {
            "first": (20, 20), "first-distributed": (20, 20), "cnn": (100, 100)}
        assert "no studies yet" in second.stdout
        assert "20 trials so far; best:" in second.stdout
        assert "20 succeeded; best:" in second.stdout
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGINT)  # Ctrl-C in the first terminal
            try:
                first.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(first.pid, signal.SIGKILL)
                first.wait()
    assert first.returncode == 0, log.read_text()
    assert (tmp_path / "storage-proxy-data").is_dir()
