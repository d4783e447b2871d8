"""Regenerate the Python gRPC code from proto/ into optuna_grpc_storage/protocol/v1/.

Usage: python scripts/gen_proto.py [--out DIR]

The generated files are committed; tests/test_proto_fresh.py fails when they are stale.
The generator version is pinned in pyproject.toml's `dev` extra so output is reproducible.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
PACKAGE = "optuna_grpc_storage/protocol/v1"  # the .proto files' folder under proto/
PROTOS = [f"{PACKAGE}/journal.proto"]
GENERATED = ["journal_pb2.py", "journal_pb2.pyi", "journal_pb2_grpc.py"]


def generate(out_root: pathlib.Path) -> list[pathlib.Path]:
    """Write generated modules under out_root (laid out as the package is)."""
    from grpc_tools import protoc  # dev dependency, imported only here

    out_root.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *PROTOS,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed: " + " ".join(args))
    return [out_root / PACKAGE / name for name in GENERATED]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=ROOT, help="output root (the repo)")
    files = generate(parser.parse_args().out)
    for f in files:
        print(f"wrote {f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
