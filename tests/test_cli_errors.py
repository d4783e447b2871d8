"""The user's command in its first hour (issue 17, items 6, 7, 8, 10, 12): every error is one
`error:` line and a non-zero exit, never a traceback; an unreachable proxy is reported by every
command within the short reach deadline; one rule for a journal that does not exist; messages
that say how to fix what they report; --help that documents every option and its default."""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pytest

from optuna_grpc_storage import AuthenticationError, GrpcJournalStorage
from optuna_grpc_storage.tools import cli as user_cli
from storage_proxy import cli as operator_cli
from storage_proxy.process.embedded_redis import free_port

ROOT = Path(__file__).resolve().parent.parent


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "optuna_grpc_storage.tools.cli", *args]


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command(*args), env=env, capture_output=True, text=True, timeout=120)


def one_error(out: subprocess.CompletedProcess[str]) -> str:
    """The one line the command printed: an `error:` line on stderr, with a non-zero exit."""
    assert out.returncode != 0, out
    assert "Traceback" not in out.stderr, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    return lines[0]


@pytest.fixture
def env(proxy, token, make_storage) -> dict[str, str]:
    optuna.create_study(study_name="s", storage=make_storage()).optimize(
        lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    return {**os.environ, "OPTUNA_GRPC_STORAGE_ENDPOINT": proxy.endpoint,
            "OPTUNA_GRPC_STORAGE_TOKEN": token}


def test_file_and_port_errors_are_one_line(env, tmp_path) -> None:
    """Item 7: these were tracebacks (the export's named a temporary file)."""
    missing = tmp_path / "nowhere.log"
    line = one_error(run(env, "import", str(missing), "--journal", "imported"))
    assert f"cannot read {missing}" in line
    target = tmp_path / "no-such-dir" / "out.log"
    line = one_error(run(env, "export", str(target)))
    assert f"cannot write {target}" in line and ".out.log." not in line, line
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = one_error(run(env, "dashboard", "--port", str(port)))
    assert f"127.0.0.1:{port}" in line and "another --port" in line, line


def test_an_unknown_journal_is_the_same_error_in_every_command(env) -> None:
    """Item 8: status said "no studies yet" and exited 0, the dashboard served an empty
    page; only export named the journals that exist."""
    expected = "error: there is no journal 'nosuch' in your namespace (journals: default)"
    for args in (("status", "--journal", "nosuch"), ("dashboard", "--journal", "nosuch"),
                 ("export", "out.log", "--journal", "nosuch"),
                 ("logs", "some-study", "--journal", "nosuch")):
        assert one_error(run(env, *args)) == expected, args
    assert run(env, "status", "--journal", "default").returncode == 0
    assert run(env, "status").returncode == 0


def test_every_command_reports_an_unreachable_proxy_within_the_reach_deadline(
        tmp_path) -> None:
    """Item 6: `status` to a closed port said so after 60 s of silent retries."""
    port = free_port()  # nothing listens there
    env = {**os.environ, "OPTUNA_GRPC_STORAGE_ENDPOINT": f"127.0.0.1:{port}",
           "OPTUNA_GRPC_STORAGE_TOKEN": "ogs_abc_def"}
    (tmp_path / "in.log").write_text("")
    commands = [("status",), ("status", "--json", "--follow"), ("journals",),
                ("export", str(tmp_path / "out.log")), ("import", str(tmp_path / "in.log")),
                ("delete-journal", "x", "--yes"), ("dashboard", "--port", "0")]
    started = time.monotonic()
    procs = [subprocess.Popen(command(*args), env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for args in commands]
    try:
        outs = [subprocess.CompletedProcess(p.args, p.wait(120), *p.communicate())
                for p in procs]
    finally:
        for p in procs:
            p.kill()
    print(f"{len(commands)} commands at once, all refused after "
          f"{time.monotonic() - started:.1f}s")
    deadline = f"{user_cli.REACH_SECONDS:.0f}s"
    for args, out in zip(commands, outs, strict=True):
        line = one_error(out)
        assert f"could not reach the storage proxy at 127.0.0.1:{port} for {deadline}" \
            in line, (args, line)


def test_the_missing_token_error_says_how_to_give_one(proxy) -> None:
    """Item 10: it said the same thing twice in Python terms and never named --token."""
    env = {k: v for k, v in os.environ.items() if k != "OPTUNA_GRPC_STORAGE_TOKEN"}
    env["OPTUNA_GRPC_STORAGE_ENDPOINT"] = proxy.endpoint
    line = one_error(run(env, "status"))
    assert line.count("OPTUNA_GRPC_STORAGE_TOKEN") == 1 and "--token" in line, line
    assert "storage-proxy token issue" in line and "metadata" not in line, line
    with pytest.raises(AuthenticationError, match=r"none was given: .*token="):
        GrpcJournalStorage(proxy.endpoint, token="")


def test_a_token_with_a_line_break_is_refused_before_any_call(proxy, token) -> None:
    GrpcJournalStorage(proxy.endpoint, token=f"  {token}\n")  # around it: dropped
    with pytest.raises(ValueError, match="characters a gRPC header cannot carry") as e:
        GrpcJournalStorage(proxy.endpoint, token=token[:10] + "\n" + token[10:])
    assert token[10:] not in str(e.value)


def quoted_errors() -> dict[str, str]:
    """The README's **Errors** paragraph: `SomeError` ("the text it carries")."""
    text = (ROOT / "README.md").read_text()
    paragraph = text[text.index("**Errors**"):].split("\n\n", 1)[0]
    return dict(re.findall(r'`(\w+Error)` \("([^"]+)"\)', " ".join(paragraph.split())))


def test_the_readme_quotes_the_errors_the_client_raises(proxy) -> None:
    """Item 10: the README quoted an AuthenticationError text the code no longer produced."""
    quoted = quoted_errors()
    assert set(quoted) >= {"AuthenticationError", "ProxyUnavailableError"}
    with pytest.raises(AuthenticationError) as e:
        GrpcJournalStorage(proxy.endpoint, token="ogs_wrong_token")
    assert str(e.value) == quoted["AuthenticationError"].replace("HOST:PORT", proxy.endpoint)
    port = free_port()
    with pytest.raises(Exception) as e:
        GrpcJournalStorage(f"127.0.0.1:{port}", token="ogs_a_b", retry_deadline=1)
    pattern = re.escape(quoted["ProxyUnavailableError"].replace("60s", "1s")).replace(
        re.escape("HOST:PORT"), re.escape(f"127.0.0.1:{port}")).replace(re.escape("..."), ".*")
    assert type(e.value).__name__ == "ProxyUnavailableError"
    assert re.search(pattern, str(e.value)), (pattern, str(e.value))


def options(parser: argparse.ArgumentParser, path: str = "") -> list[tuple[str, Any]]:
    """(command path, action) for every option and argument of every subcommand."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += options(sub, f"{path} {name}".strip())
        elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            found.append((path, action))
    return found


@pytest.mark.parametrize("parser", [user_cli.build_parser, operator_cli.build_parser],
                         ids=["optuna-grpc-storage", "storage-proxy"])
def test_every_option_has_help_that_shows_its_default(parser) -> None:
    """Item 12: `status --interval` and `dashboard --port` showed no default; `import FILE`,
    `journals --json`, `--data-dir`, `--key-prefix` had no help at all."""
    gaps = []
    for path, action in options(parser()):
        name = f"{path} {action.option_strings[0] if action.option_strings else action.dest}"
        if not action.help:
            gaps.append(f"{name}: no help")
        elif action.default not in (None, False, [], argparse.SUPPRESS):
            shown = f"{action.default:g}" if isinstance(action.default, float) \
                else str(action.default)
            if shown not in action.help:
                gaps.append(f"{name}: default {shown!r} not shown")
    assert gaps == []
