"""KubernetesLauncher: the workers as indexed Kubernetes Jobs, one trial per completion.

`manifests(batch)` builds plain dicts, the whole of what is sent to the cluster:

* a Secret holding the token (the Pods read it into OPTUNA_GRPC_STORAGE_TOKEN);
* with image-pull credentials, a `kubernetes.io/dockerconfigjson` Secret the Pods pull with;
* a ConfigMap holding the pickled objective and the requirements (mounted read-only);
* an indexed Job (one per GPU model with `gpu_model`, see pods.py): `completions`, its share of
  `parallelism`, `restartPolicy: Never` with a per-index retry budget, the runtime image,
  requests/limits (`nvidia.com/gpu` with `use_gpu`), the scratch and /dev/shm volumes, and a
  command that makes sure the image has optuna-grpc-storage, pip-installs the requirements,
  then runs the worker with `--max-trials 1`. Its Pods carry the label the proxy's
  NetworkPolicy admits (`optuna-grpc-storage/client: "true"`, deploy/kubernetes/base).

`launch` only sends them through the official client: the Jobs first, suspended, so that the
Secrets and ConfigMap can name them as their owners and are deleted with the last of them (the
token does not outlive the Jobs), then the Jobs are resumed.

Object names come from the study name, mapped: lowercased, every run of characters other than
a-z, 0-9 and '-' replaced by one '-', cut to 30 characters, '-' trimmed ("study" if nothing is
left), then prefixed "ogs-" and suffixed with the batch id, which makes them unique. So any
study name works ("CNN on CIFAR_10" -> ogs-cnn-on-cifar-10-<id>); the name itself is kept
unchanged in the `optuna-grpc-storage/study` annotation and in the worker's arguments.
"""

from __future__ import annotations

import base64
import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from optuna_grpc_storage.protocol.version import __version__
from optuna_grpc_storage.runner.batch import Batch
from optuna_grpc_storage.runner.launchers.base import Launch, Launcher
from optuna_grpc_storage.runner.launchers.pods import GPU, MOUNT, JobPart, job_parts, pod_spec
from optuna_grpc_storage.storage.connection import ENDPOINT_ENV, TOKEN_ENV

# A ConfigMap (like any object) is at most 1 MiB; keep room for its keys and metadata.
CONFIGMAP_LIMIT = 1 << 20
CONFIGMAP_PAYLOAD_LIMIT = CONFIGMAP_LIMIT - 16 * 1024
LABEL_BATCH = "optuna-grpc-storage/batch"
# What the proxy's NetworkPolicy (deploy/kubernetes/base/proxy-networkpolicy.yaml) admits.
CLIENT_LABELS = {"optuna-grpc-storage/client": "true"}
GPU_MODEL_LABEL = "nvidia.com/gpu.product"  # set on GPU nodes by NVIDIA's feature discovery
# Study names go into an annotation: all of a Job's annotations together hold at most 256 KiB.
MAX_STUDY_NAME_BYTES = 4096
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                        r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")

__all__ = ["CLIENT_LABELS", "GPU", "LABEL_BATCH", "MOUNT", "KubernetesLaunch",
           "KubernetesLauncher"]


class KubernetesLaunch(Launch):
    def __init__(self, names: Sequence[str], namespace: str, batch_id: str,
                 batch_api: Any) -> None:
        self.names, self.namespace, self.batch_id = list(names), namespace, batch_id
        self.name = self.names[0]
        self.batch_api = batch_api

    def alive(self) -> bool | None:
        """True while a Job may still run, False once every Job is Complete or Failed."""
        states = [self._alive(name) for name in self.names]
        if True in states:
            return True
        return None if None in states else False

    def _alive(self, name: str) -> bool | None:
        try:
            job = self.batch_api.read_namespaced_job_status(name, self.namespace)
        except Exception:
            return None
        conditions = job.status.conditions or []
        return not any(c.type in ("Complete", "Failed") and c.status == "True"
                       for c in conditions)

    def explain(self) -> str:
        return (f"Job {', '.join(f'{self.namespace}/{n}' for n in self.names)}: kubectl -n "
                f"{self.namespace} logs -l {LABEL_BATCH}={self.batch_id} --prefix")

    def stop(self) -> None:
        for name in self.names:
            self.batch_api.delete_namespaced_job(name, self.namespace,
                                                 propagation_policy="Foreground")


class KubernetesLauncher(Launcher):
    """Runs a batch as indexed Jobs in `namespace`.

    `endpoint` is the proxy's address as the Pods reach it (default: the controller's, which
    may be an outside address). `api_client` is a `kubernetes.client.ApiClient`; by default
    the in-cluster configuration is used, else ~/.kube/config. `gpu_models` are the GPU
    models `optimize(gpu_model=...)` may name: {name: value of the node label
    `gpu_model_label`}, or a list of names whose label value is the name with '_' as '-'
    (AIAuto's `gpu_3090` -> `gpu-3090`). `client_requirement` is what pip installs when the
    runtime image lacks optuna-grpc-storage (None: do not try).
    """

    def __init__(self, namespace: str = "default", *, endpoint: str | None = None,
                 service_account: str | None = None, image_pull_secrets: tuple[str, ...] = (),
                 node_selector: dict[str, str] | None = None,
                 tolerations: list[dict[str, Any]] | None = None,
                 labels: dict[str, str] | None = None, backoff_limit_per_index: int = 3,
                 ttl_seconds_after_finished: int = 3600,
                 gpu_models: Mapping[str, str] | Sequence[str] = (),
                 gpu_model_label: str = GPU_MODEL_LABEL,
                 client_requirement: str | None = f"optuna-grpc-storage=={__version__}",
                 api_client: Any = None) -> None:
        self.namespace = namespace
        self.endpoint = endpoint
        self.service_account = service_account
        self.image_pull_secrets = tuple(image_pull_secrets)
        self.node_selector = dict(node_selector or {})
        self.tolerations = list(tolerations or [])
        self.labels = dict(labels or {})
        self.backoff_limit_per_index = backoff_limit_per_index
        self.ttl_seconds_after_finished = ttl_seconds_after_finished
        self.gpu_models = _gpu_models(gpu_models, gpu_model_label)
        self.gpu_model_label = gpu_model_label
        self.client_requirement = client_requirement
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
        if len(batch.study_name.encode()) > MAX_STUDY_NAME_BYTES:
            raise ValueError(f"the study name is longer than the {MAX_STUDY_NAME_BYTES} bytes "
                             "a Job's annotation carries here; use a shorter study_name")
        directory = batch.pod.tmp_cache_dir
        if directory == MOUNT or MOUNT.startswith(directory + "/") \
                or directory.startswith(MOUNT + "/"):
            raise ValueError(f"tmp_cache_dir {directory!r} would hide the worker's own files at "
                             f"{MOUNT}; pick another directory, like '/mnt/tmp-cache'")
        self._check_gpu(batch)
        job_parts(batch, self.gpu_models, self.gpu_model_label)  # enough parallelism

    def _check_gpu(self, batch: Batch) -> None:
        count = batch.resources_requests.get(GPU) or batch.resources_limits.get(GPU)
        if count is not None and (not batch.use_gpu or not str(count).isdigit()
                                  or int(count) < 1):
            raise ValueError(f"{GPU} = {count!r}: GPUs are asked for with use_gpu=True and "
                             "counted in whole GPUs ('1', '2', ...)")
        unknown = [m for m, _ in batch.pod.gpu_model if m not in self.gpu_models]
        if unknown:
            known = ", ".join(self.gpu_models) or "none: the launcher was made without gpu_models"
            raise ValueError(f"gpu_model {unknown[0]!r} is not a GPU model of this cluster; "
                             f"the models are: {known}")

    def job_name(self, batch: Batch) -> str:
        slug = re.sub(r"[^a-z0-9-]+", "-", batch.study_name.lower()).strip("-")[:30]
        slug = slug.strip("-") or "study"
        return f"ogs-{slug}-{batch.batch_id[:12]}"  # + "-g<i>-<index>" stays a 63-char hostname

    def manifests(self, batch: Batch,
                  owner_uids: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """[Secret (token), Secret (image pull), ConfigMap, Job, ...]: no token Secret without a
        token, no pull Secret without credentials, one Job per part (see pods.job_parts).
        With `owner_uids` (the Jobs', in order), the Secrets and ConfigMap are owned by them."""
        self.check(batch)
        name = self.job_name(batch)
        parts = job_parts(batch, self.gpu_models, self.gpu_model_label)
        labels = {"app.kubernetes.io/name": "optuna-grpc-storage-worker",
                  "app.kubernetes.io/managed-by": "optuna-grpc-storage",
                  LABEL_BATCH: batch.batch_id[:63], **self.labels}
        meta = {"name": name, "namespace": self.namespace, "labels": labels,
                "annotations": {"optuna-grpc-storage/study": batch.study_name}}
        owned = dict(meta)
        if owner_uids:
            owned["ownerReferences"] = [{
                "apiVersion": "batch/v1", "kind": "Job", "name": name + part.suffix,
                "uid": uid, "blockOwnerDeletion": True}
                for part, uid in zip(parts, owner_uids, strict=True)]
        out: list[dict[str, Any]] = []
        if batch.token:
            out.append({"apiVersion": "v1", "kind": "Secret", "metadata": owned,
                        "type": "Opaque", "stringData": {"token": batch.token}})
        if batch.pod.docker_config is not None:
            out.append({"apiVersion": "v1", "kind": "Secret",
                        "metadata": {**owned, "name": f"{name}-pull"},
                        "type": "kubernetes.io/dockerconfigjson",
                        "data": {".dockerconfigjson": batch.pod.docker_config_json()}})
        out.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": owned,
                    "binaryData": {"objective.pkl": base64.b64encode(batch.objective).decode()},
                    "data": {"requirements.txt": _requirements_text(batch)}})
        out.extend(self._job(batch, name, part, labels, meta) for part in parts)
        return out

    def _job(self, batch: Batch, name: str, part: JobPart, labels: dict[str, str],
             meta: dict[str, Any]) -> dict[str, Any]:
        env = [{"name": ENDPOINT_ENV, "value": self.endpoint or batch.endpoint},
               {"name": "PYTHONUNBUFFERED", "value": "1"}]
        if batch.token:
            env.append({"name": TOKEN_ENV, "valueFrom": {
                "secretKeyRef": {"name": name, "key": "token"}}})
        settings: dict[str, Any] = {}
        if self.service_account:
            settings["serviceAccountName"] = self.service_account
        pull = [*self.image_pull_secrets,
                *([f"{name}-pull"] if batch.pod.docker_config is not None else [])]
        if pull:
            settings["imagePullSecrets"] = [{"name": s} for s in pull]
        pod = pod_spec(batch, name=name, env=env, script=self._start_script(batch),
                       settings=settings, tolerations=self.tolerations,
                       node_selector={**self.node_selector, **part.node_selector})
        return {
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {**meta, "name": name + part.suffix},
            "spec": {
                "completionMode": "Indexed",
                "completions": part.completions,
                "parallelism": part.parallelism,
                "backoffLimitPerIndex": self.backoff_limit_per_index,
                "ttlSecondsAfterFinished": self.ttl_seconds_after_finished,
                "suspend": True,  # resumed once the Secrets and ConfigMap exist (see launch)
                "template": {"metadata": {"labels": {**labels, **CLIENT_LABELS}},
                             "spec": pod},
            },
        }

    def _start_script(self, batch: Batch) -> str:
        """sh: get optuna-grpc-storage if the image lacks it, install the requirements (if
        any), then become the worker ("$@": its args)."""
        lines = ["set -e"]
        pip = "python -m pip install --no-cache-dir --disable-pip-version-check -q"
        if self.client_requirement:
            lines.append('python -c "import optuna_grpc_storage" 2>/dev/null || '
                         f"{pip} {shlex.quote(self.client_requirement)}")
        if batch.requirements:
            lines.append(f"{pip} -r {shlex.quote(MOUNT + '/requirements.txt')}")
        lines.append('exec python -m optuna_grpc_storage.runner.worker "$@"')
        return "\n".join(lines)

    # -- sending them ---------------------------------------------------------------------

    def launch(self, batch: Batch) -> KubernetesLaunch:
        from kubernetes import client

        api = self.api_client or _default_api_client()
        core, batch_api = client.CoreV1Api(api), client.BatchV1Api(api)
        jobs = [m for m in self.manifests(batch) if m["kind"] == "Job"]
        names: list[str] = []
        try:
            uids = []
            for job in jobs:
                created = batch_api.create_namespaced_job(self.namespace, job)
                names.append(job["metadata"]["name"])
                uids.append(created.metadata.uid)
            for manifest in self.manifests(batch, owner_uids=uids):
                if manifest["kind"] == "Secret":
                    core.create_namespaced_secret(self.namespace, manifest)
                elif manifest["kind"] == "ConfigMap":
                    core.create_namespaced_config_map(self.namespace, manifest)
            for name in names:
                batch_api.patch_namespaced_job(name, self.namespace,
                                               {"spec": {"suspend": False}})
        except BaseException:  # no suspended Job left behind; what it owns goes with it
            for name in names:
                batch_api.delete_namespaced_job(name, self.namespace,
                                                propagation_policy="Foreground")
            raise
        return KubernetesLaunch(names, self.namespace, batch.batch_id, batch_api)


def _gpu_models(models: Mapping[str, str] | Sequence[str], label: str) -> dict[str, str]:
    """{model name: node label value}, checked as Kubernetes label syntax."""
    if isinstance(models, str):
        raise ValueError("gpu_models must be a list of model names or a dict {name: label "
                         "value}, not a string")
    mapping = dict(models) if isinstance(models, Mapping) \
        else {m: m.replace("_", "-") for m in models}
    if not _LABEL_KEY.match(label) or len(label.rsplit("/", 1)[-1]) > 63:
        raise ValueError(f"gpu_model_label {label!r} is not a Kubernetes label key")
    for model, value in mapping.items():
        if not isinstance(value, str) or not value or len(value) > 63 \
                or not _LABEL_VALUE.match(value):
            raise ValueError(f"gpu_models[{model!r}] = {value!r} is not a Kubernetes label "
                             "value (at most 63 letters, digits, '-', '_', '.', alphanumeric "
                             "at both ends)")
    return mapping


def _requirements_text(batch: Batch) -> str:
    return "".join(f"{r}\n" for r in batch.requirements)


def _default_api_client() -> Any:
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()
