"""Training code that knows nothing of Optuna: one session, one configuration, one score.

`optuna-grpc-storage run config.yaml --session train.py:single_session` calls it once per
trial, with the static params of config.yaml and one value of each search-space parameter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import train_test_split


def single_session(cfg: dict[str, Any],
                   report: Callable[[int, float], bool] | None = None) -> float:
    """Validation accuracy of a linear model on digits after cfg["epochs"] epochs.
    `report(epoch, accuracy)` (given when the study prunes) answers whether to stop early."""
    X, y = load_digits(return_X_y=True)
    X_train, X_valid, y_train, y_valid = train_test_split(
        X / 16.0, y, test_size=cfg["data"]["valid_fraction"], random_state=cfg["seed"])
    model = SGDClassifier(alpha=cfg["alpha"], loss=cfg["model"]["loss"],
                          penalty=cfg["model"]["penalty"], eta0=cfg["eta0"],
                          learning_rate="constant", random_state=cfg["seed"])
    accuracy = 0.0
    for epoch in range(cfg["epochs"]):
        model.partial_fit(X_train, y_train, classes=np.unique(y))
        accuracy = float(model.score(X_valid, y_valid))
        if report is not None and report(epoch, accuracy):
            break  # the pruner says this one will not beat the others
    return accuracy


if __name__ == "__main__":  # the same code runs without Optuna, with a fixed configuration
    print(single_session({"seed": 0, "epochs": 5, "alpha": 1e-4, "eta0": 0.01,
                          "data": {"valid_fraction": 0.3},
                          "model": {"loss": "hinge", "penalty": "l2"}}))
