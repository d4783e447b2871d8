"""What `optimize` accepts about how the workers run: resources and requirements, checked
before anything is created."""

from __future__ import annotations

import os
import re
from decimal import Decimal
from typing import Any

DEFAULT_RESOURCES = {"cpu": "256m", "memory": "256Mi"}  # as the AIAuto client

_COMMENT = re.compile(r"(^|\s+)#.*$")
# Kubernetes resource quantities: 256m, 0.5, 1Gi, 512Mi, 1e3...
_QUANTITY = re.compile(r"^[+]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[mkMGTPE]i?|Ki|n|u)?$")
_SUFFIX = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
           "k": Decimal(10**3), "M": Decimal(10**6), "G": Decimal(10**9), "T": Decimal(10**12),
           "P": Decimal(10**15), "E": Decimal(10**18), **{
               s + "i": Decimal(2 ** (10 * i)) for i, s in enumerate("KMGTPE", 1)}}


def quantity(text: str) -> Decimal:
    """A Kubernetes quantity's value ('500m' -> 0.5, '1Gi' -> 1073741824); ValueError if it
    is not one."""
    match = _QUANTITY.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{text!r} is not a Kubernetes quantity")
    number, suffix = match.group(1), match.group(3) or ""
    if suffix not in _SUFFIX:  # an exponent: 1e3
        return Decimal(number + suffix)
    return Decimal(number) * _SUFFIX[suffix]


def check_run(*, n_trials: Any, parallelism: Any, timeout: Any, use_gpu: Any,
              runtime_image: Any) -> None:
    """optimize's sizes and switches; ValueError naming a bad one."""
    for name, value in (("n_trials", n_trials), ("parallelism", parallelism)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or not timeout > 0):
        raise ValueError(f"timeout must be None or a positive number of seconds, "
                         f"got {timeout!r}")
    if not isinstance(use_gpu, bool):
        raise ValueError(f"use_gpu must be True or False, got {use_gpu!r}")
    if runtime_image is not None and (not isinstance(runtime_image, str)
                                      or not runtime_image.strip()):
        raise ValueError(f"runtime_image must be an image name, got {runtime_image!r}")


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


def resolve_resources(requests: dict[str, str] | None,
                      limits: dict[str, str] | None) -> tuple[dict[str, str], dict[str, str]]:
    """(requests, limits), checked, with the defaults filled in so that they stay valid: left
    out, the limits are the defaults raised to the requests (AIAuto's README sets requests of 2
    CPUs and 4Gi alone), the requests the defaults lowered to the limits. A request above its
    given limit is a ValueError (Kubernetes would refuse the Pod)."""
    given_requests = check_resources("resources_requests", requests)
    given_limits = check_resources("resources_limits", limits)
    if requests is not None and limits is None:
        given_limits = {k: max(v, given_requests.get(k, v), key=quantity)
                        for k, v in DEFAULT_RESOURCES.items()}
    if limits is not None and requests is None:
        given_requests = {k: min(v, given_limits.get(k, v), key=quantity)
                          for k, v in DEFAULT_RESOURCES.items()}
    for key, request in given_requests.items():
        if key in given_limits and quantity(request) > quantity(given_limits[key]):
            raise ValueError(
                f"resources_requests[{key!r}] = {request!r} is more than resources_limits"
                f"[{key!r}] = {given_limits[key]!r}; a Pod may not request more than its "
                "limit (leave resources_limits out to have it follow the requests)")
    return given_requests, given_limits


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
