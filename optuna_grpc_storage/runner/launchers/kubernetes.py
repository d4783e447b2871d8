"""KubernetesLauncher: the workers as an indexed Kubernetes Job, one trial per completion.

`manifests(batch)` builds three plain dicts, the whole of what is sent to the cluster:

* a Secret holding the token (the Pods read it into OPTUNA_GRPC_STORAGE_TOKEN);
* a ConfigMap holding the pickled objective and the requirements (mounted read-only);
* an indexed Job: `completions = n_trials`, `parallelism`, `restartPolicy: Never` with a
  per-index retry budget, the runtime image, requests/limits (`nvidia.com/gpu: 1` with
  `use_gpu`), and a command that pip-installs the requirements, then runs the worker with
  `--max-trials 1`.

`launch` only sends them through the official client: the Job first, suspended, so that the
Secret and ConfigMap can name it as their owner and are deleted with it (the token does not
outlive the Job), then the Job is resumed.
"""

from __future__ import annotations

import base64
import re
import shlex
from typing import Any

from optuna_grpc_storage.runner.batch import Batch
from optuna_grpc_storage.runner.launchers.base import Launch, Launcher
from optuna_grpc_storage.storage.connection import ENDPOINT_ENV, TOKEN_ENV

# A ConfigMap (like any object) is at most 1 MiB; keep room for its keys and metadata.
CONFIGMAP_LIMIT = 1 << 20
CONFIGMAP_PAYLOAD_LIMIT = CONFIGMAP_LIMIT - 16 * 1024
MOUNT = "/var/run/optuna-grpc-storage"
LABEL_BATCH = "optuna-grpc-storage/batch"
GPU = "nvidia.com/gpu"


class KubernetesLaunch(Launch):
    def __init__(self, name: str, namespace: str, batch_id: str, batch_api: Any) -> None:
        self.name, self.namespace, self.batch_id = name, namespace, batch_id
        self.batch_api = batch_api

    def alive(self) -> bool | None:
        try:
            job = self.batch_api.read_namespaced_job_status(self.name, self.namespace)
        except Exception:
            return None
        conditions = job.status.conditions or []
        return not any(c.type in ("Complete", "Failed") and c.status == "True"
                       for c in conditions)

    def explain(self) -> str:
        return (f"Job {self.namespace}/{self.name}: kubectl -n {self.namespace} logs "
                f"-l {LABEL_BATCH}={self.batch_id} --prefix")

    def stop(self) -> None:
        self.batch_api.delete_namespaced_job(self.name, self.namespace,
                                             propagation_policy="Foreground")


class KubernetesLauncher(Launcher):
    """Runs a batch as an indexed Job in `namespace`.

    `endpoint` is the proxy's address as the Pods reach it (default: the controller's, which
    may be an outside address). `api_client` is a `kubernetes.client.ApiClient`; by default
    the in-cluster configuration is used, else ~/.kube/config.
    """

    def __init__(self, namespace: str = "default", *, endpoint: str | None = None,
                 service_account: str | None = None, image_pull_secrets: tuple[str, ...] = (),
                 node_selector: dict[str, str] | None = None,
                 tolerations: list[dict[str, Any]] | None = None,
                 labels: dict[str, str] | None = None, backoff_limit_per_index: int = 3,
                 ttl_seconds_after_finished: int = 3600, api_client: Any = None) -> None:
        self.namespace = namespace
        self.endpoint = endpoint
        self.service_account = service_account
        self.image_pull_secrets = tuple(image_pull_secrets)
        self.node_selector = dict(node_selector or {})
        self.tolerations = list(tolerations or [])
        self.labels = dict(labels or {})
        self.backoff_limit_per_index = backoff_limit_per_index
        self.ttl_seconds_after_finished = ttl_seconds_after_finished
        self.api_client = api_client

    # -- the manifests --------------------------------------------------------------------

    def check(self, batch: Batch) -> None:
        size = len(batch.objective) + len(_requirements_text(batch))
        if size > CONFIGMAP_PAYLOAD_LIMIT:
            raise ValueError(
                f"the pickled objective is {size / 2**20:.2f} MiB, more than a Kubernetes "
                f"ConfigMap holds ({CONFIGMAP_PAYLOAD_LIMIT / 2**20:.2f} MiB with its "
                "metadata): it carries large data it closes over or uses as globals; load "
                "that data inside the objective instead (from object storage, a URL or a "
                "volume)"
            )

    def job_name(self, batch: Batch) -> str:
        slug = re.sub(r"[^a-z0-9-]+", "-", batch.study_name.lower()).strip("-")[:30]
        slug = slug.strip("-") or "study"
        return f"ogs-{slug}-{batch.batch_id[:12]}"  # + "-<index>" stays a 63-char hostname

    def manifests(self, batch: Batch, owner_uid: str | None = None) -> list[dict[str, Any]]:
        """[Secret, ConfigMap, Job] (no Secret without a token). With `owner_uid` (the Job's),
        the Secret and ConfigMap are owned by the Job."""
        self.check(batch)
        name = self.job_name(batch)
        labels = {"app.kubernetes.io/name": "optuna-grpc-storage-worker",
                  "app.kubernetes.io/managed-by": "optuna-grpc-storage",
                  LABEL_BATCH: batch.batch_id[:63], **self.labels}
        meta = {"name": name, "namespace": self.namespace, "labels": labels,
                "annotations": {"optuna-grpc-storage/study": batch.study_name}}
        if owner_uid:
            meta = {**meta, "ownerReferences": [{
                "apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": owner_uid,
                "blockOwnerDeletion": True}]}
        out: list[dict[str, Any]] = []
        if batch.token:
            out.append({"apiVersion": "v1", "kind": "Secret", "metadata": meta,
                        "type": "Opaque", "stringData": {"token": batch.token}})
        out.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
                    "binaryData": {"objective.pkl": base64.b64encode(batch.objective).decode()},
                    "data": {"requirements.txt": _requirements_text(batch)}})
        out.append(self._job(batch, name, labels, meta))
        return out

    def _job(self, batch: Batch, name: str, labels: dict[str, str],
             meta: dict[str, Any]) -> dict[str, Any]:
        env = [{"name": ENDPOINT_ENV, "value": self.endpoint or batch.endpoint},
               {"name": "PYTHONUNBUFFERED", "value": "1"}]
        if batch.token:
            env.append({"name": TOKEN_ENV, "valueFrom": {
                "secretKeyRef": {"name": name, "key": "token"}}})
        requests, limits = dict(batch.resources_requests), dict(batch.resources_limits)
        tolerations = list(self.tolerations)
        if batch.use_gpu:
            requests[GPU] = limits[GPU] = "1"
            tolerations.append({"key": GPU, "operator": "Exists", "effect": "NoSchedule"})
        pod: dict[str, Any] = {
            "restartPolicy": "Never",
            "containers": [{
                "name": "worker",
                "image": batch.runtime_image,
                "command": ["sh", "-c", _start_script(batch), "worker"],
                "args": batch.worker_args(f"{MOUNT}/objective.pkl", max_trials=1),
                "env": env,
                "resources": {"requests": requests, "limits": limits},
                "volumeMounts": [{"name": "batch", "mountPath": MOUNT, "readOnly": True}],
            }],
            "volumes": [{"name": "batch", "configMap": {"name": name}}],
        }
        if self.service_account:
            pod["serviceAccountName"] = self.service_account
        if self.image_pull_secrets:
            pod["imagePullSecrets"] = [{"name": s} for s in self.image_pull_secrets]
        if self.node_selector:
            pod["nodeSelector"] = self.node_selector
        if tolerations:
            pod["tolerations"] = tolerations
        return {
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {k: v for k, v in meta.items() if k != "ownerReferences"},
            "spec": {
                "completionMode": "Indexed",
                "completions": batch.n_trials,
                "parallelism": batch.workers,
                "backoffLimitPerIndex": self.backoff_limit_per_index,
                "ttlSecondsAfterFinished": self.ttl_seconds_after_finished,
                "suspend": True,  # resumed once the Secret and ConfigMap exist (see launch)
                "template": {"metadata": {"labels": labels}, "spec": pod},
            },
        }

    # -- sending them ---------------------------------------------------------------------

    def launch(self, batch: Batch) -> KubernetesLaunch:
        from kubernetes import client

        api = self.api_client or _default_api_client()
        core, batch_api = client.CoreV1Api(api), client.BatchV1Api(api)
        job = self.manifests(batch)[-1]
        name = job["metadata"]["name"]
        created = batch_api.create_namespaced_job(self.namespace, job)
        try:
            for manifest in self.manifests(batch, owner_uid=created.metadata.uid)[:-1]:
                if manifest["kind"] == "Secret":
                    core.create_namespaced_secret(self.namespace, manifest)
                else:
                    core.create_namespaced_config_map(self.namespace, manifest)
            batch_api.patch_namespaced_job(name, self.namespace, {"spec": {"suspend": False}})
        except BaseException:  # no suspended Job left behind; what it owns goes with it
            batch_api.delete_namespaced_job(name, self.namespace,
                                            propagation_policy="Foreground")
            raise
        return KubernetesLaunch(name, self.namespace, batch.batch_id, batch_api)


def _requirements_text(batch: Batch) -> str:
    return "".join(f"{r}\n" for r in batch.requirements)


def _start_script(batch: Batch) -> str:
    """sh: install the requirements (if any), then become the worker ("$@": its args)."""
    lines = ["set -e"]
    if batch.requirements:
        lines.append("python -m pip install --no-cache-dir --disable-pip-version-check -q "
                     f"-r {shlex.quote(MOUNT + '/requirements.txt')}")
    lines.append('exec python -m optuna_grpc_storage.runner.worker "$@"')
    return "\n".join(lines)


def _default_api_client() -> Any:
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()
