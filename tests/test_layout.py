"""The rules the layout keeps (ARCHITECTURE.md): what each part may load, one version, and
modules and functions small enough to read at once."""

from __future__ import annotations

import ast
import hashlib
import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import optuna_grpc_storage
import storage_proxy
from optuna_grpc_storage.protocol.version import __version__

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = [p for part in ("optuna_grpc_storage", "storage_proxy")
           for p in sorted((ROOT / part).rglob("*.py")) if "_pb2" not in p.name]
HEAVY = ("cloudpickle", "tqdm", "kubernetes", "yaml", "optuna", "numpy")


def modules_after(statement: str) -> list[str]:
    """sys.modules of a fresh interpreter after `statement`."""
    code = f"{statement}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    return json.loads(out.stdout.splitlines()[-1])


def offending(modules: list[str], prefixes: tuple[str, ...]) -> list[str]:
    return [m for m in modules if m in prefixes or m.startswith(tuple(p + "." for p in prefixes))]


@pytest.mark.parametrize("statement", [
    "import storage_proxy.cli",
    "import storage_proxy.process.supervisor",  # what `storage-proxy serve` runs
])
def test_the_server_loads_neither_runner_nor_tools_nor_their_libraries(statement: str) -> None:
    loaded = modules_after(statement)
    assert "storage_proxy.tokens" in loaded
    assert offending(loaded, ("optuna_grpc_storage.runner", "optuna_grpc_storage.tools",
                              "optuna_grpc_storage.storage", *HEAVY)) == []


def test_the_storage_plugin_loads_nothing_of_runner_tools_or_server() -> None:
    loaded = modules_after("from optuna_grpc_storage.storage import GrpcJournalStorage, "
                           "GrpcArtifactStore")
    assert "optuna_grpc_storage.storage.journal_storage" in loaded
    assert "optuna_grpc_storage.storage.artifacts" in loaded
    assert offending(loaded, ("optuna_grpc_storage.runner", "optuna_grpc_storage.tools",
                              "storage_proxy", "cloudpickle", "kubernetes", "yaml")) == []


def test_a_trial_worker_does_not_load_artifacts_or_boto3() -> None:
    """optuna.artifacts imports boto3 when it is installed: a quarter of a second of CPU in
    every worker process that starts, for nothing unless it stores artifacts."""
    loaded = modules_after("from optuna_grpc_storage import GrpcJournalStorage")
    assert "optuna_grpc_storage.storage.journal_storage" in loaded
    assert offending(loaded, ("optuna_grpc_storage.storage.artifacts", "optuna.artifacts",
                              "boto3")) == []


def test_the_package_imports_its_parts_only_when_asked() -> None:
    loaded = modules_after("import optuna_grpc_storage")
    assert offending(loaded, ("optuna_grpc_storage.storage", "optuna_grpc_storage.runner",
                              "optuna_grpc_storage.tools", "grpc", "optuna")) == []
    for name in optuna_grpc_storage.__all__:  # every public name still resolves
        assert getattr(optuna_grpc_storage, name) is not None


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


@pytest.mark.parametrize("part, forbidden", [
    ("optuna_grpc_storage", ("storage_proxy",)),  # the client never imports the server
    ("optuna_grpc_storage/protocol", ("optuna_grpc_storage.storage", "optuna_grpc_storage.runner",
                                      "optuna_grpc_storage.tools", "optuna")),
    ("optuna_grpc_storage/storage", ("optuna_grpc_storage.runner",
                                     "optuna_grpc_storage.tools")),
    ("optuna_grpc_storage/runner", ("optuna_grpc_storage.tools",)),
    ("storage_proxy", ("optuna_grpc_storage.storage", "optuna_grpc_storage.runner",
                       "optuna_grpc_storage.tools", "optuna")),
])
def test_imports_go_one_way(part: str, forbidden: tuple[str, ...]) -> None:
    for path in (p for p in PRODUCT if str(p).startswith(str(ROOT / part))):
        bad = offending(sorted(imported_modules(path)), forbidden)
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_one_version_in_one_place() -> None:
    assigned = [p for p in PRODUCT if re.search(r"^__version__\s*=", p.read_text(), re.M)]
    assert assigned == [ROOT / "optuna_grpc_storage" / "protocol" / "version.py"]
    assert "dynamic = [\"version\"]" in (ROOT / "pyproject.toml").read_text()
    assert storage_proxy.__version__ == optuna_grpc_storage.__version__ == __version__
    assert metadata.version("optuna-grpc-storage") == __version__


def test_the_proxy_reports_the_clients_version(raw) -> None:
    from optuna_grpc_storage.protocol.v1 import journal_pb2 as pb

    assert raw.WhoAmI(pb.WhoAmIRequest()).server_version == __version__


def test_modules_and_functions_are_short() -> None:
    long_modules, long_functions = [], []
    for path in PRODUCT:
        source = path.read_text()
        if len(source.splitlines()) > 350:
            long_modules.append(str(path.relative_to(ROOT)))
        for node in ast.walk(ast.parse(source)):
            if (isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                    and node.end_lineno - node.lineno + 1 > 60):
                long_functions.append(f"{path.relative_to(ROOT)}:{node.name}")
    assert long_modules == [] and long_functions == []


def test_every_lua_script_is_a_file_the_store_loads() -> None:
    from storage_proxy.redis import scripts

    files = sorted(p.stem for p in (ROOT / "storage_proxy" / "redis" / "lua").glob("*.lua"))
    used = sorted(set(re.findall(r'scripts\.register\(\w+, "(\w+)"\)', "".join(
        p.read_text() for p in PRODUCT))))
    assert files == used  # none unused, none missing
    for name in files:
        assert scripts.name_of(hashlib.sha1(scripts.source(name).encode()).hexdigest()) == name


def test_installing_gives_no_setuptools_deprecation_warnings(tmp_path) -> None:
    """Issue 17, item 11: every install printed ~60 lines of warnings about `project.license`
    as a TOML table. The metadata is built here as pip builds it, warnings on."""
    out = subprocess.run(
        [sys.executable, "-W", "default", "-c", "import sys, setuptools.build_meta as b; "
         "b.prepare_metadata_for_build_wheel(sys.argv[1])", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "Warning" not in out.stdout + out.stderr, out.stderr
    (info,) = tmp_path.glob("*.dist-info")
    fields = metadata.Distribution.at(info).metadata
    assert fields["License-Expression"] == "MIT"
    assert "examples" in fields.get_all("Provides-Extra")
