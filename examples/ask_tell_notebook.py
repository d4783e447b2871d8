"""Ask and tell from a notebook: the notebook itself asks the study for parameters, evaluates
them however it likes (here an SVM on the digits dataset, which ships inside scikit-learn) and
tells the result. Any other process with the token sees the same study at once.

    .venv/bin/python examples/ask_tell_notebook.py [--quick]

The `# %%` markers are cells, as in VS Code or Jupytext: run them one by one in a notebook.
"""

# %% The operator gave you an endpoint and a token (here: a throwaway proxy if none is set).
from __future__ import annotations

import argparse
import atexit
import contextlib

import optuna
from _proxy import proxy_endpoint
from optuna.distributions import CategoricalDistribution, FloatDistribution
from sklearn.datasets import load_digits
from sklearn.model_selection import cross_val_score
from sklearn.svm import SVC

from optuna_grpc_storage import GrpcJournalStorage

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="fewer trials (for the tests)")
parser.add_argument("--study", default="digits-svc-ask-tell")
args = parser.parse_args()
optuna.logging.set_verbosity(optuna.logging.WARNING)
session = contextlib.ExitStack()
atexit.register(session.close)  # the throwaway proxy stops even if a cell fails
endpoint, token = session.enter_context(proxy_endpoint())

# %% Create (or reopen) the study on the proxy.
storage = GrpcJournalStorage(endpoint, token=token)
study = optuna.create_study(study_name=args.study, storage=storage, direction="maximize",
                            sampler=optuna.samplers.TPESampler(seed=1), load_if_exists=True)
study.enqueue_trial({"C": 1.0, "kernel": "rbf"})  # a point you want tried first

# %% Ask, evaluate, tell: the search space is given up front (define-and-run).
space = {"C": FloatDistribution(1e-2, 1e2, log=True),
         "kernel": CategoricalDistribution(["rbf", "linear", "poly"])}
X, y = load_digits(return_X_y=True)
if args.quick:
    X, y = X[:600], y[:600]
for _ in range(5 if args.quick else 25):
    trial = study.ask(space)
    accuracy = cross_val_score(SVC(gamma="scale", **trial.params), X, y, cv=3).mean()
    study.tell(trial, accuracy)
    print(f"trial {trial.number}: {trial.params} -> {accuracy:.4f}")

# %% A failed evaluation is told as such, and does not count as a result.
trial = study.ask(space)
study.tell(trial, state=optuna.trial.TrialState.FAIL)

# %% Anyone else with the token (a colleague's notebook, a worker) sees the same study.
theirs = optuna.load_study(study_name=args.study, storage=GrpcJournalStorage(endpoint, token))
frame = theirs.trials_dataframe(attrs=("number", "value", "params", "state"))
print(frame.to_string(index=False))
print(f"best accuracy {theirs.best_value:.4f} with {theirs.best_params}")

# %% Done: stop the throwaway proxy (nothing to do with a real one).
session.close()
