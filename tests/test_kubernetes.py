"""KubernetesLauncher: its manifests pass the Kubernetes schemas and carry every setting, and its
Pods' command really runs the study (executed here as processes, since there is no cluster)."""

from __future__ import annotations

import base64
import concurrent.futures
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import optuna
import pytest

from optuna_grpc_storage import RUNTIME_IMAGES, Controller, KubernetesLauncher
from optuna_grpc_storage.runner.batch import Batch
from optuna_grpc_storage.runner.launchers.base import Launch
from optuna_grpc_storage.runner.launchers.kubernetes import MOUNT
from optuna_grpc_storage.runner.objective import pack_objective, unpack_objective

KUBERNETES_VERSION = "1.33.0"  # backoffLimitPerIndex is GA from 1.33
TOKEN = "ogs_secret-token-value"


def objective(trial: optuna.Trial) -> float:
    return trial.suggest_float("x", -1, 1) ** 2


def make_batch(**overrides: Any) -> Batch:
    fields: dict[str, Any] = {
        "study_name": "CNN on CIFAR_10", "journal": "default", "batch_id": "0123456789ab",
        "n_trials": 100, "parallelism": 4, "objective": pack_objective(objective),
        "endpoint": "proxy.hpo.svc:13000", "token": TOKEN,
        "requirements": ("torch>=2.0", "scikit-learn"),
        "resources_requests": {"cpu": "500m", "memory": "1Gi"},
        "resources_limits": {"cpu": "2", "memory": "4Gi"},
    }
    return Batch(**{**fields, **overrides})


def validate(manifests: list[dict[str, Any]]) -> None:
    for manifest in manifests:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def by_kind(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {m["kind"]: m for m in manifests}


def test_cpu_batch_manifests() -> None:
    launcher = KubernetesLauncher(namespace="hpo", service_account="trials",
                                  image_pull_secrets=("registry",), node_selector={"pool": "cpu"})
    batch = make_batch()
    manifests = launcher.manifests(batch)
    validate(manifests)
    kinds = by_kind(manifests)
    assert list(kinds) == ["Secret", "ConfigMap", "Job"]
    job, cm, secret = kinds["Job"], kinds["ConfigMap"], kinds["Secret"]
    name = job["metadata"]["name"]
    assert name == "ogs-cnn-on-cifar-10-0123456789ab" and len(name) + 4 <= 63
    assert all(m["metadata"]["namespace"] == "hpo" for m in manifests)
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == \
        ("Indexed", 100, 4)
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and spec["backoffLimitPerIndex"] == 3
    assert (pod["serviceAccountName"], pod["imagePullSecrets"], pod["nodeSelector"]) == \
        ("trials", [{"name": "registry"}], {"pool": "cpu"})
    (container,) = pod["containers"]
    assert container["image"] == RUNTIME_IMAGES[0]
    assert container["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi"},
                                      "limits": {"cpu": "2", "memory": "4Gi"}}
    assert "nvidia.com/gpu" not in json.dumps(job) and "tolerations" not in pod
    script = container["command"][2]
    assert "pip install" in script and f"-r {MOUNT}/requirements.txt" in script
    assert script.endswith('exec python -m optuna_grpc_storage.runner.worker "$@"')
    assert script.index("import optuna_grpc_storage") < script.index("-r ")  # client first
    args = container["args"]
    assert args[args.index("--max-trials") + 1] == "1"  # one trial per completion
    assert args[args.index("--objective") + 1] == f"{MOUNT}/objective.pkl"
    assert args[args.index("--study") + 1] == "CNN on CIFAR_10"
    env = {e["name"]: e for e in container["env"]}
    assert env["OPTUNA_GRPC_STORAGE_ENDPOINT"]["value"] == "proxy.hpo.svc:13000"
    assert env["OPTUNA_GRPC_STORAGE_TOKEN"]["valueFrom"]["secretKeyRef"] == \
        {"name": name, "key": "token"}
    assert pod["volumes"] == [{"name": "batch", "configMap": {"name": name}},  # + AIAuto's scratch
                              {"name": "tmp-cache", "emptyDir": {"sizeLimit": "500Mi"}}]
    # the objective, byte for byte, and it still works
    payload = base64.b64decode(cm["binaryData"]["objective.pkl"])
    assert payload == batch.objective
    assert unpack_objective(payload)(optuna.trial.FixedTrial({"x": 0.5})) == 0.25
    assert cm["data"]["requirements.txt"] == "torch>=2.0\nscikit-learn\n"
    # the token is in the Secret and nowhere else
    assert secret["stringData"] == {"token": TOKEN}
    assert TOKEN not in json.dumps(job) + json.dumps(cm)
    # strict validation is real: a misspelt field is caught
    job["spec"]["completion"] = job["spec"].pop("completions")
    with pytest.raises(kubernetes_validate.ValidationError, match="completion"):
        validate([job])


def test_gpu_batch_manifests() -> None:
    launcher = KubernetesLauncher(namespace="hpo", endpoint="dns:///proxy-headless:13000")
    manifests = launcher.manifests(make_batch(use_gpu=True, runtime_image=RUNTIME_IMAGES[1],
                                              requirements=(), parallelism=200, n_trials=8))
    validate(manifests)
    job = by_kind(manifests)["Job"]
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == RUNTIME_IMAGES[1] != RUNTIME_IMAGES[0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "1"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in \
        pod["tolerations"]
    assert job["spec"]["parallelism"] == 8  # never more Pods at once than trials
    assert "requirements.txt" not in container["command"][2]  # nothing to install but us
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["OPTUNA_GRPC_STORAGE_ENDPOINT"] == "dns:///proxy-headless:13000"


def test_owned_secret_and_configmap_validate() -> None:
    manifests = KubernetesLauncher().manifests(make_batch(), owner_uids=["4f1c-uid"])
    validate(manifests)
    for kind in ("Secret", "ConfigMap"):
        (owner,) = by_kind(manifests)[kind]["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["uid"]) == ("Job", "4f1c-uid")
    assert "ownerReferences" not in by_kind(manifests)["Job"]["metadata"]
    no_token = KubernetesLauncher().manifests(make_batch(token=None))
    validate(no_token)
    assert [m["kind"] for m in no_token] == ["ConfigMap", "Job"]


def test_an_objective_over_the_configmap_limit_is_refused_before_launch(proxy, token) -> None:
    controller = Controller(token, endpoint=proxy.endpoint, launcher=KubernetesLauncher())
    study = controller.create_study("big")
    weights = os.urandom(2 << 20)

    def big(trial: optuna.Trial) -> float:
        return float(len(weights))

    with pytest.raises(ValueError, match=r"ConfigMap .*load that data inside the objective"):
        study.optimize(big, n_trials=3)
    assert study.get_status()["count_total"] == 0 and study.launches == []


class PodsHere(KubernetesLauncher):
    """The Job's Pods as local processes: the manifests' command, args and env, the Secret's
    token and the ConfigMap's files where the Pod would mount them; `parallelism` at once, one
    process per completion index. Everything the cluster would do but the API call."""

    def __init__(self, directory: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.directory = directory

    def launch(self, batch: Batch) -> Launch:
        kinds = by_kind(self.manifests(batch))
        validate(list(kinds.values()))
        mount = self.directory / batch.batch_id
        mount.mkdir()
        for key, value in kinds["ConfigMap"]["binaryData"].items():
            (mount / key).write_bytes(base64.b64decode(value))
        for key, value in kinds["ConfigMap"]["data"].items():
            (mount / key).write_text(value)
        spec = kinds["Job"]["spec"]
        (container,) = spec["template"]["spec"]["containers"]
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        for var in container["env"]:
            ref = var.get("valueFrom", {}).get("secretKeyRef")
            env[var["name"]] = kinds["Secret"]["stringData"][ref["key"]] if ref else var["value"]
        command = [part.replace(MOUNT, str(mount))
                   for part in container["command"] + container["args"]]

        def pod(index: int) -> int:
            return subprocess.run(command, env={**env, "JOB_COMPLETION_INDEX": str(index)},
                                  capture_output=True, check=False).returncode

        pool = concurrent.futures.ThreadPoolExecutor(spec["parallelism"])
        self.results = [pool.submit(pod, i) for i in range(spec["completions"])]
        pool.shutdown(wait=False)
        return _Pods(self.results)


class _Pods(Launch):
    def __init__(self, results: list[concurrent.futures.Future[int]]) -> None:
        self.results = results

    def alive(self) -> bool:
        return not all(r.done() for r in self.results)


def test_the_jobs_pods_run_the_study(proxy, token, tmp_path: Path) -> None:
    launcher = PodsHere(tmp_path)
    controller = Controller(token, endpoint=proxy.endpoint, launcher=launcher,
                            heartbeat_interval=0.5, grace_period=5.0)
    study = controller.create_study("on-k8s", sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(objective, n_trials=4, parallelism=2)
    status = study.wait(timeout=180, poll_interval=0.2, progress_bar=False)
    assert status["count_succeeded"] == status["count_total"] == 4
    assert [r.result() for r in launcher.results] == [0, 0, 0, 0]
    xs = [t.params["x"] for t in study.get_study().trials]
    assert len(set(xs)) == 4  # each Pod seeded its sampler differently


class ManifestsOnly(KubernetesLauncher):
    """Builds what would be sent and keeps it (no cluster to send it to)."""

    def launch(self, batch: Batch) -> Launch:
        self.sent = self.manifests(batch)
        return _Pods([])


def test_optimize_defaults_and_gpu_image_choice(proxy, token) -> None:
    launcher = ManifestsOnly(namespace="hpo")
    study = Controller(token, endpoint=proxy.endpoint, launcher=launcher).create_study("gpu")
    for use_gpu, image in ((False, RUNTIME_IMAGES[0]), (True, RUNTIME_IMAGES[1])):
        # nothing runs these trials (no cluster), so optimize must not wait for one
        study.optimize(objective, n_trials=3, parallelism=2, use_gpu=use_gpu,
                       wait_option="WAIT_NO")
        validate(launcher.sent)
        (container,) = by_kind(launcher.sent)["Job"]["spec"]["template"]["spec"]["containers"]
        default = {"cpu": "256m", "memory": "256Mi"}
        gpu = {"nvidia.com/gpu": "1"} if use_gpu else {}
        assert container["image"] == image
        assert container["resources"] == {"requests": {**default, **gpu},
                                          "limits": {**default, **gpu}}
    study.optimize(objective, n_trials=1, runtime_image="registry.example/me/runtime:1",
                   requirements_list=["lightgbm"], wait_option="WAIT_NO")
    (container,) = by_kind(launcher.sent)["Job"]["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.example/me/runtime:1"
    assert by_kind(launcher.sent)["ConfigMap"]["data"]["requirements.txt"] == "lightgbm\n"
    assert study.get_status()["count_total"] == 7


def test_a_failed_launch_leaves_no_trial_waiting(proxy, token) -> None:
    """The API call itself (no cluster here: nothing listens at the address) fails; the
    batch's trials end FAIL saying why, instead of waiting for workers that never come."""
    from kubernetes import client
    from urllib3.exceptions import MaxRetryError

    configuration = client.Configuration()
    configuration.host = "http://127.0.0.1:9"
    configuration.retries = 0
    launcher = KubernetesLauncher(api_client=client.ApiClient(configuration))
    study = Controller(token, endpoint=proxy.endpoint, launcher=launcher).create_study("nok8s")
    with pytest.raises(MaxRetryError, match=r"/apis/batch/v1/namespaces/default/jobs"):
        study.optimize(objective, n_trials=3)
    status = study.get_status()
    assert (status["count_total"], status["count_failed"], status["count_active"]) == (3, 3, 0)
    assert status["last_error"].startswith("trial ") and "the launch failed" in \
        status["last_error"]
    (batch,) = status["trialbatches"].values()
    assert batch["phase"] == "Failed" and batch["conditions"][0]["reason"] == "LaunchFailed"
    assert "MaxRetryError" in batch["conditions"][0]["message"]
