"""The Pod options of `optimize`, with AIAuto's names, checked before anything is created.

They shape the Kubernetes launcher's Pods (launchers/kubernetes.py); the local launcher has no
Pods and ignores them, but they are checked the same everywhere, so a notebook that passes
here passes on the cluster:

* `dev_shm_size`: a memory-backed /dev/shm (PyTorch DataLoader workers share tensors there),
  only with `use_gpu`, where it is added by default;
* `tmp_cache_dir`, `use_tmp_cache_mem`, `tmp_cache_size`: an emptyDir scratch volume in every
  Pod, on disk or in memory;
* `gpu_model`: a GPU model name, or `{model: n_trials}` spreading the trials over models (the
  rest, if any, run on any GPU); the names the operator configured on the launcher;
* image-pull credentials, one registry (`image_pull_registry` + username + password) or a
  Docker config (`image_pull_docker_config_json`), never both: they become a Secret owned by
  the Job. They are kept out of `repr`, the batch record, ConfigMaps, command lines and errors.
"""

from __future__ import annotations

import base64
import json
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from optuna_grpc_storage.runner.options import quantity

DEFAULT_DEV_SHM_SIZE = "500Mi"
DEFAULT_TMP_CACHE_DIR = "/mnt/tmp-cache"
DEFAULT_TMP_CACHE_SIZE = "500Mi"
MAX_VOLUME_SIZE = "4Gi"  # per volume, as AIAuto: memory-backed ones count against the Pod's memory
_SYSTEM_DIRS = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib64", "/proc", "/sbin", "/sys",
                "/usr")


@dataclass(frozen=True)
class PodOptions:
    dev_shm_size: str = DEFAULT_DEV_SHM_SIZE
    tmp_cache_dir: str = DEFAULT_TMP_CACHE_DIR
    use_tmp_cache_mem: bool = False
    tmp_cache_size: str = DEFAULT_TMP_CACHE_SIZE
    gpu_model: tuple[tuple[str, int], ...] = ()  # (model, n_trials), in the order given
    docker_config: Mapping[str, Any] | None = field(default=None, repr=False)

    def docker_config_json(self) -> str:
        """The `.dockerconfigjson` of the pull Secret, base64 (a Secret's `data`)."""
        return base64.b64encode(json.dumps(self.docker_config).encode()).decode()


def pod_options(*, n_trials: int, use_gpu: bool, dev_shm_size: str = DEFAULT_DEV_SHM_SIZE,
                tmp_cache_dir: str = DEFAULT_TMP_CACHE_DIR, use_tmp_cache_mem: bool = False,
                tmp_cache_size: str = DEFAULT_TMP_CACHE_SIZE,
                gpu_model: str | Mapping[str, int] | None = None,
                image_pull_registry: str | None = None, image_pull_username: str | None = None,
                image_pull_password: str | None = None,
                image_pull_docker_config_json: Mapping[str, Any] | None = None) -> PodOptions:
    """The options checked (ValueError saying what is wrong and what is allowed)."""
    if not use_gpu and dev_shm_size != DEFAULT_DEV_SHM_SIZE:
        raise ValueError("dev_shm_size applies only with use_gpu=True (a memory-backed /dev/shm "
                         f"of {DEFAULT_DEV_SHM_SIZE} is added to GPU Pods by default)")
    size("dev_shm_size", dev_shm_size)
    size("tmp_cache_size", tmp_cache_size)
    if not isinstance(use_tmp_cache_mem, bool):
        raise ValueError(f"use_tmp_cache_mem must be True or False, got {use_tmp_cache_mem!r}")
    return PodOptions(
        dev_shm_size=dev_shm_size, tmp_cache_dir=_directory(tmp_cache_dir),
        use_tmp_cache_mem=use_tmp_cache_mem, tmp_cache_size=tmp_cache_size,
        gpu_model=_gpu_models(gpu_model, n_trials, use_gpu),
        docker_config=_docker_config(image_pull_registry, image_pull_username,
                                     image_pull_password, image_pull_docker_config_json),
    )


def size(name: str, value: Any) -> None:
    try:
        amount = quantity(value)
    except ValueError:
        amount = None
    if amount is None or not 0 < amount <= quantity(MAX_VOLUME_SIZE):
        raise ValueError(f"{name} must be a size above 0 and at most {MAX_VOLUME_SIZE}, like "
                         f"'500Mi' or '2Gi', got {value!r}")


def _directory(path: Any) -> str:
    normal = posixpath.normpath(path) if isinstance(path, str) else ""
    bad = (not isinstance(path, str) or not posixpath.isabs(path) or normal != path.rstrip("/")
           or normal == "/" or any(normal == d or normal.startswith(d + "/")
                                   for d in _SYSTEM_DIRS))
    if bad:
        raise ValueError(f"tmp_cache_dir must be the absolute path of a directory of its own, "
                         f"like {DEFAULT_TMP_CACHE_DIR!r} (not /, not under "
                         f"{', '.join(_SYSTEM_DIRS)}), got {path!r}")
    return normal


def _gpu_models(gpu_model: Any, n_trials: int, use_gpu: bool) -> tuple[tuple[str, int], ...]:
    if gpu_model is None:
        return ()
    if not use_gpu:
        raise ValueError("gpu_model chooses the GPU model of GPU Pods: pass use_gpu=True too")
    models = {gpu_model: n_trials} if isinstance(gpu_model, str) else gpu_model
    if not isinstance(models, Mapping) or not models:
        raise ValueError(f"gpu_model must be a model name or a dict {{model: n_trials}}, like "
                         f"{{'gpu_3090': 3, 'gpu_4090': 4}}, got {gpu_model!r}")
    for model, count in models.items():
        if not isinstance(model, str) or not model.strip():
            raise ValueError(f"gpu_model: {model!r} is not a model name")
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise ValueError(f"gpu_model[{model!r}] must be a number of trials >= 1, "
                             f"got {count!r}")
    if sum(models.values()) > n_trials:
        raise ValueError(f"gpu_model asks for {sum(models.values())} trials in all, more than "
                         f"n_trials={n_trials} (fewer is fine: the rest run on any GPU)")
    return tuple(models.items())


def _docker_config(registry: Any, username: Any, password: Any,
                   config: Any) -> dict[str, Any] | None:
    trio = {"image_pull_registry": registry, "image_pull_username": username,
            "image_pull_password": password}
    given = [k for k, v in trio.items() if v is not None]
    if given and config is not None:
        raise ValueError("pass either image_pull_registry/_username/_password (one registry) or "
                         "image_pull_docker_config_json (several), not both")
    if given:
        missing = [k for k, v in trio.items() if not isinstance(v, str) or not v]
        if missing:
            raise ValueError(f"image pull credentials need all three of {', '.join(trio)}; "
                             f"missing or not a non-empty string: {', '.join(missing)}")
        config = {"auths": {registry: {"username": username, "password": password}}}
    if config is None:
        return None
    auths = config.get("auths") if isinstance(config, Mapping) else None
    if not isinstance(auths, Mapping) or not auths:
        raise ValueError('image_pull_docker_config_json must be a Docker config like {"auths": '
                         '{"ghcr.io": {"username": "...", "password": "..."}}}')
    out = {}
    for host, entry in auths.items():
        out[host] = _auth_entry(host, entry)
    return {**config, "auths": out}


def _auth_entry(host: Any, entry: Any) -> dict[str, str]:
    """One registry's entry, with `auth` (base64 of user:password) filled in. Errors name the
    registry and the keys, never a value."""
    if not isinstance(host, str) or not host or not isinstance(entry, Mapping) \
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in entry.items()):
        raise ValueError(f"image_pull_docker_config_json: the entry of registry {host!r} must "
                         "map 'username', 'password' (or 'auth') to strings")
    entry = dict(entry)
    if "auth" not in entry:
        if not entry.get("username") or not entry.get("password"):
            raise ValueError(f"image_pull_docker_config_json: registry {host!r} needs "
                             "'username' and 'password', or 'auth'")
        entry["auth"] = base64.b64encode(
            f"{entry['username']}:{entry['password']}".encode()).decode()
    return entry
