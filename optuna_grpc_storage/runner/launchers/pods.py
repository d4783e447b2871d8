"""The Pods of a batch's Kubernetes Jobs: the worker container, its resources and volumes, and
how `gpu_model` spreads a batch over Jobs (one per GPU model, plus one for the rest).

Plain dicts, validated against the Kubernetes schemas by the tests; kubernetes.py names them,
owns them and sends them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from optuna_grpc_storage.runner.batch import Batch

MOUNT = "/var/run/optuna-grpc-storage"  # the ConfigMap: the objective, the requirements
GPU = "nvidia.com/gpu"


@dataclass(frozen=True)
class JobPart:
    """One Job of a batch: its share of the trials, of the parallelism, and where it runs."""

    suffix: str  # "" for a batch in one Job, else "-g<i>"
    completions: int
    parallelism: int
    node_selector: dict[str, str]


def job_parts(batch: Batch, gpu_models: dict[str, str], label: str) -> list[JobPart]:
    """One Job per model of `gpu_model` ({model: n_trials}), and one without a model for
    the trials left; or the whole batch in one Job. The Jobs' parallelisms add up to
    `batch.workers`; ValueError if that is fewer than the Jobs."""
    shares = [(gpu_models[m], n) for m, n in batch.pod.gpu_model]
    rest = batch.n_trials - sum(n for _, n in shares)
    parts: list[tuple[dict[str, str], int]] = [({label: v}, n) for v, n in shares]
    if rest or not parts:
        parts.append(({}, rest))
    if len(parts) > batch.workers:
        raise ValueError(
            f"gpu_model spreads the batch over {len(parts)} Jobs (one per model"
            f"{' and one for the trials left' if rest and shares else ''}), but parallelism="
            f"{batch.parallelism} allows only {batch.workers} Pods at once: raise parallelism "
            f"to at least {len(parts)}")
    split = split_parallelism(batch.workers, [n for _, n in parts])
    if len(parts) == 1:
        return [JobPart("", parts[0][1], split[0], parts[0][0])]
    return [JobPart(f"-g{i}", n, p, selector)
            for i, ((selector, n), p) in enumerate(zip(parts, split, strict=True))]


def split_parallelism(total: int, completions: list[int]) -> list[int]:
    """`total` Pods at once over Jobs of these sizes: each at least 1 and at most its size,
    the rest given out in proportion to the sizes (largest share per Pod first)."""
    out = [1] * len(completions)
    for _ in range(total - len(completions)):
        open_jobs = [i for i, n in enumerate(completions) if out[i] < n]
        best = max(open_jobs, key=lambda i: (completions[i] / out[i], -i))
        out[best] += 1
    return out


def resources(batch: Batch) -> dict[str, dict[str, str]]:
    """Requests and limits; a GPU batch asks for `nvidia.com/gpu` (the user's count, default
    1) with the limit equal to the request, as Kubernetes requires of extended resources."""
    requests, limits = dict(batch.resources_requests), dict(batch.resources_limits)
    if batch.use_gpu:
        count = str(requests.get(GPU) or limits.get(GPU) or "1")
        requests[GPU] = limits[GPU] = count
    return {"requests": requests, "limits": limits}


def volumes(batch: Batch, configmap: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, the container's volumeMounts): the ConfigMap; the scratch emptyDir at
    tmp_cache_dir (in memory with use_tmp_cache_mem); /dev/shm in memory for GPU Pods."""
    pod = batch.pod
    tmp: dict[str, Any] = {"sizeLimit": pod.tmp_cache_size}
    if pod.use_tmp_cache_mem:
        tmp["medium"] = "Memory"
    out = [{"name": "batch", "configMap": {"name": configmap}},
           {"name": "tmp-cache", "emptyDir": tmp}]
    mounts = [{"name": "batch", "mountPath": MOUNT, "readOnly": True},
              {"name": "tmp-cache", "mountPath": pod.tmp_cache_dir}]
    if batch.use_gpu:
        out.append({"name": "dshm", "emptyDir": {"medium": "Memory",
                                                  "sizeLimit": pod.dev_shm_size}})
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    return out, mounts


def pod_spec(batch: Batch, *, name: str, env: list[dict[str, Any]], script: str,
             settings: dict[str, Any], node_selector: dict[str, str],
             tolerations: list[dict[str, Any]]) -> dict[str, Any]:
    """The Pod template's spec: one worker container running `script` with the worker's
    arguments. `settings` are the launcher's own Pod fields (service account, pull secrets)."""
    vols, mounts = volumes(batch, name)
    tolerations = list(tolerations)
    if batch.use_gpu:
        tolerations.append({"key": GPU, "operator": "Exists", "effect": "NoSchedule"})
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [{
            "name": "worker",
            "image": batch.runtime_image,
            "command": ["sh", "-c", script, "worker"],
            "args": batch.worker_args(f"{MOUNT}/objective.pkl", max_trials=1),
            "env": env,
            "resources": resources(batch),
            "volumeMounts": mounts,
        }],
        "volumes": vols,
        **settings,
    }
    if node_selector:
        pod["nodeSelector"] = node_selector
    if tolerations:
        pod["tolerations"] = tolerations
    return pod
