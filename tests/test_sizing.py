"""deploy/README.md section 6 sizes Redis from scripts/measure_bytes_per_trial.py: the script
runs a real study through a real proxy and Redis and counts what it says it counts."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def _load_script() -> ModuleType:
    path = ROOT / "scripts" / "measure_bytes_per_trial.py"
    spec = importlib.util.spec_from_file_location("measure_bytes_per_trial", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_bytes_per_trial_script_measures_a_real_study(tmp_path: Path) -> None:
    m = _load_script().measure("RandomSampler", 3, 30, tmp_path)
    # The study's creation, then per trial: create, three parameters, finish (Optuna's entries).
    assert round(m["entries"] * 30) == 1 + 30 * 5
    assert m["journal"] > 5 * 16  # the entries' JSON plus the quota's 16 bytes each
    for what in ("memory", "rdb", "aof"):
        assert m[what] > 0, what
    assert m["snapshot"] == 0  # 150 entries: below the first snapshot
    readme = (ROOT / "deploy" / "README.md").read_text()
    assert "scripts/measure_bytes_per_trial.py" in readme
