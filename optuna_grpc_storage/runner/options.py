"""What `optimize` accepts about how the workers run: resources and requirements, checked
before anything is created."""

from __future__ import annotations

import os
import re

DEFAULT_RESOURCES = {"cpu": "256m", "memory": "256Mi"}  # as the AIAuto client

_COMMENT = re.compile(r"(^|\s+)#.*$")
# Kubernetes resource quantities: 256m, 0.5, 1Gi, 512Mi, 1e3...
_QUANTITY = re.compile(r"^[+]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[mkMGTPE]i?|Ki|n|u)?$")
def check_resources(name: str, resources: dict[str, str] | None) -> dict[str, str]:
    """A copy of the resources with every quantity checked; ValueError naming a bad one."""
    if resources is None:
        return dict(DEFAULT_RESOURCES)
    if not isinstance(resources, dict):
        raise ValueError(f"{name} must be a dict like {DEFAULT_RESOURCES}, got {resources!r}")
    out = {}
    for key, value in resources.items():
        text = str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
            else value
        if not isinstance(key, str) or not isinstance(text, str) or not _QUANTITY.match(text):
            raise ValueError(
                f"{name}[{key!r}] = {value!r} is not a Kubernetes quantity "
                "(for example '500m' or '2' for cpu, '512Mi' or '4Gi' for memory)"
            )
        out[key] = text
    return out


def read_requirements(requirements_file: str | os.PathLike[str] | None,
                      requirements_list: list[str] | None) -> tuple[str, ...]:
    if requirements_file is not None and requirements_list is not None:
        raise ValueError("pass requirements_file or requirements_list, not both")
    if requirements_list is not None:
        if isinstance(requirements_list, str) or not all(
                isinstance(r, str) and r.strip() for r in requirements_list):
            raise ValueError("requirements_list must be a list of requirement strings, "
                             "like ['torch>=2.0', 'scikit-learn']")
        return tuple(r.strip() for r in requirements_list)
    if requirements_file is not None:
        with open(requirements_file, encoding="utf-8") as f:  # pip's comment rule
            lines = [_COMMENT.sub("", line).strip() for line in f]
        return tuple(line for line in lines if line)
    return ()
