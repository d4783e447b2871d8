"""The objective travels by value: notebook functions work, unpicklable things are named."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from optuna_grpc_storage.runner.objective import pack_objective, unpack_objective

CELL = '''
import math
from collections import Counter
import optuna

SCALE = 3.0

class Model:
    def __init__(self, depth: int) -> None:
        self.depth = depth
    def loss(self, x: float) -> float:
        return SCALE * math.fabs(x) + self.depth

def make_objective(depth: int):
    model = Model(depth)
    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", -1, 1)
        return model.loss(x) + len(Counter("ab"))
    return objective
'''


@pytest.mark.parametrize("namespace", [{"__name__": "__main__"}, {}],
                         ids=["notebook-main", "bare-exec"])
def test_a_cell_defined_objective_runs_in_a_fresh_interpreter(namespace: dict, tmp_path) -> None:
    exec(compile(CELL, "<cell>", "exec", dont_inherit=True), namespace)
    payload = tmp_path / "objective.pkl"
    payload.write_bytes(pack_objective(namespace["make_objective"](2)))
    # a new process that never saw the cell: class, closure, global, imports all travel
    code = textwrap.dedent(f"""
        import optuna
        from optuna_grpc_storage.runner.objective import unpack_objective
        objective = unpack_objective(open({str(payload)!r}, "rb").read())
        trial = optuna.trial.FixedTrial({{"x": -0.5}})
        print(objective(trial), objective.__annotations__)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.startswith("5.5 {'trial': <class 'optuna.trial._trial.Trial'>")


def test_what_cannot_travel_is_named(tmp_path) -> None:
    namespace: dict = {"__name__": "__main__", "path": str(tmp_path / "log.txt")}
    exec(textwrap.dedent("""
        import socket
        LOG = open(path, "w")
        class Config:
            def __init__(self):
                self.conn = socket.socket()
        CONFIG = Config()
        def helper():
            return CONFIG.conn
        def logs(trial):
            LOG.write("x")
            return 1.0
        def connects(trial):
            helper()
            return 1.0
    """), namespace)
    with pytest.raises(ValueError, match=r"logs → LOG is <_io.TextIOWrapper") as e:
        pack_objective(namespace["logs"])
    assert "create them inside the objective instead" in str(e.value)
    with pytest.raises(ValueError, match=r"connects → helper → CONFIG\.conn is <socket"):
        pack_objective(namespace["connects"])
    with pytest.raises(ValueError, match="must be callable"):
        pack_objective("objective")
    namespace["LOG"].close()
    namespace["CONFIG"].conn.close()


def test_round_trip_in_process() -> None:
    assert unpack_objective(pack_objective(len))("abc") == 3
