"""The generated code in optuna_grpc_storage/protocol/v1 must match what scripts/gen_proto.py
makes now."""

from __future__ import annotations

import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_generated_code_is_fresh(tmp_path: pathlib.Path) -> None:
    spec = importlib.util.spec_from_file_location("gen_proto", ROOT / "scripts" / "gen_proto.py")
    assert spec and spec.loader
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    fresh = gen.generate(tmp_path)
    assert len(fresh) == 3
    for path in fresh:
        committed = ROOT / gen.PACKAGE / path.name
        assert committed.read_bytes() == path.read_bytes(), (
            f"{committed} is stale: run `python scripts/gen_proto.py` and commit the result"
        )
