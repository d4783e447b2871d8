"""The Pod options AIAuto users set, on the Kubernetes launcher: each checked before anything is
created, each one's manifests validated against the Kubernetes schemas; study names mapped to
valid object names; and `launch` sending a multi-Job batch in the right order."""

from __future__ import annotations

import base64
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from optuna_grpc_storage import Controller, KubernetesLauncher
from optuna_grpc_storage.runner.batch import Batch
from optuna_grpc_storage.runner.launchers.base import Launch
from optuna_grpc_storage.runner.pod_options import pod_options
from tests.test_kubernetes import TOKEN, ManifestsOnly, make_batch, objective, validate

GPU_MODELS = ["gpu_3090", "gpu_4090"]
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def jobs(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in manifests if m["kind"] == "Job"]


def pod_of(job: dict[str, Any]) -> dict[str, Any]:
    return job["spec"]["template"]["spec"]


def volumes(job: dict[str, Any]) -> dict[str, tuple[dict[str, Any], str]]:
    """{volume name: (volume, mount path)}"""
    pod = pod_of(job)
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    return {v["name"]: (v, mounts[v["name"]]) for v in pod["volumes"]}


def batch(n_trials: int = 10, parallelism: int = 4, use_gpu: bool = False,
          **options: Any) -> Batch:
    return make_batch(n_trials=n_trials, parallelism=parallelism, use_gpu=use_gpu,
                      pod=pod_options(n_trials=n_trials, use_gpu=use_gpu, **options))


@pytest.fixture
def k8s_study(proxy, token) -> tuple[ManifestsOnly, Any]:
    launcher = ManifestsOnly(namespace="hpo", gpu_models=GPU_MODELS)
    return launcher, Controller(token, endpoint=proxy.endpoint,
                                launcher=launcher).create_study("pods")


def refused(study: Any, match: str, **kwargs: Any) -> None:
    """optimize refuses, and leaves nothing behind."""
    before = len(study.launches)
    with pytest.raises(ValueError, match=match):
        study.optimize(objective, n_trials=kwargs.pop("n_trials", 10),
                       wait_option="WAIT_NO", **kwargs)
    assert study.get_status()["count_total"] == 0 and len(study.launches) == before


def test_dev_shm_for_gpu_pods(k8s_study) -> None:
    launcher, study = k8s_study
    study.optimize(objective, n_trials=2, use_gpu=True, wait_option="WAIT_NO")
    validate(launcher.sent)
    shm, path = volumes(jobs(launcher.sent)[0])["dshm"]
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "500Mi"} and path == "/dev/shm"
    study.optimize(objective, n_trials=2, use_gpu=True, dev_shm_size="2Gi",
                   wait_option="WAIT_NO")
    validate(launcher.sent)
    assert volumes(jobs(launcher.sent)[0])["dshm"][0]["emptyDir"]["sizeLimit"] == "2Gi"
    study.optimize(objective, n_trials=2, wait_option="WAIT_NO")  # CPU: no /dev/shm volume
    assert "dshm" not in volumes(jobs(launcher.sent)[0])
    study = study.controller.create_study("pods-refused")  # count_total 0 after each refusal
    refused(study, "dev_shm_size applies only with use_gpu=True", dev_shm_size="1Gi")
    refused(study, "at most 4Gi", use_gpu=True, dev_shm_size="5Gi")
    refused(study, "dev_shm_size must be a size", use_gpu=True, dev_shm_size="lots")


def test_tmp_cache_volume(k8s_study) -> None:
    launcher, study = k8s_study
    study.optimize(objective, n_trials=1, wait_option="WAIT_NO")
    tmp, path = volumes(jobs(launcher.sent)[0])["tmp-cache"]
    assert tmp["emptyDir"] == {"sizeLimit": "500Mi"} and path == "/mnt/tmp-cache"
    study.optimize(objective, n_trials=1, tmp_cache_dir="/scratch/data/", use_tmp_cache_mem=True,
                   tmp_cache_size="1Gi", wait_option="WAIT_NO")
    validate(launcher.sent)
    tmp, path = volumes(jobs(launcher.sent)[0])["tmp-cache"]
    assert tmp["emptyDir"] == {"sizeLimit": "1Gi", "medium": "Memory"} and path == "/scratch/data"
    study = study.controller.create_study("pods-refused")
    for directory in ("relative/dir", "/", "/usr/lib", "/dev/shm", "/a/../b", 3):
        refused(study, "tmp_cache_dir must be the absolute path", tmp_cache_dir=directory)
    for directory in ("/var/run/optuna-grpc-storage", "/var", "/var/run/optuna-grpc-storage/x"):
        refused(study, "would hide the worker's own files", tmp_cache_dir=directory)
    refused(study, "tmp_cache_size must be a size above 0 and at most 4Gi", tmp_cache_size="8Gi")
    refused(study, "use_tmp_cache_mem must be True or False", use_tmp_cache_mem="yes")


def test_gpu_model_one_model() -> None:
    launcher = KubernetesLauncher(namespace="hpo", gpu_models=GPU_MODELS)
    manifests = launcher.manifests(batch(use_gpu=True, gpu_model="gpu_4090"))
    validate(manifests)
    (job,) = jobs(manifests)
    assert pod_of(job)["nodeSelector"] == {"nvidia.com/gpu.product": "gpu-4090"}
    assert job["spec"]["completions"] == 10 and job["spec"]["parallelism"] == 4


def test_gpu_model_spread_over_jobs() -> None:
    launcher = KubernetesLauncher(namespace="hpo", node_selector={"pool": "gpu"},
                                  gpu_models={"gpu_3090": "NVIDIA-GeForce-RTX-3090",
                                              "gpu_4090": "NVIDIA-GeForce-RTX-4090"},
                                  gpu_model_label="example.com/gpu")
    b = batch(n_trials=10, parallelism=4, use_gpu=True,
              gpu_model={"gpu_3090": 3, "gpu_4090": 4})
    manifests = launcher.manifests(b, owner_uids=["u0", "u1", "u2"])
    validate(manifests)
    found = jobs(manifests)
    base = launcher.job_name(b)
    assert [j["metadata"]["name"] for j in found] == [f"{base}-g0", f"{base}-g1", f"{base}-g2"]
    assert [j["spec"]["completions"] for j in found] == [3, 4, 3]  # the rest: any GPU
    parallelism = [j["spec"]["parallelism"] for j in found]
    assert sum(parallelism) == 4 and all(1 <= p <= c for p, c in zip(parallelism, [3, 4, 3],
                                                                      strict=True))
    assert [pod_of(j)["nodeSelector"] for j in found] == [
        {"pool": "gpu", "example.com/gpu": "NVIDIA-GeForce-RTX-3090"},
        {"pool": "gpu", "example.com/gpu": "NVIDIA-GeForce-RTX-4090"}, {"pool": "gpu"}]
    for j in found:  # every Job runs the same batch, one trial per completion
        args = pod_of(j)["containers"][0]["args"]
        assert args[args.index("--batch") + 1] == b.batch_id and "--max-trials" in args
        assert len(j["metadata"]["name"]) + len("-99999") <= 63
    for shared in (m for m in manifests if m["kind"] != "Job"):
        owners = shared["metadata"]["ownerReferences"]
        assert [(o["name"], o["uid"]) for o in owners] == [
            (f"{base}-g{i}", f"u{i}") for i in range(3)]
    full = launcher.manifests(batch(n_trials=7, parallelism=7, use_gpu=True,
                                    gpu_model={"gpu_3090": 3, "gpu_4090": 4}))
    assert [j["spec"]["completions"] for j in jobs(full)] == [3, 4]  # nothing left over
    assert [j["spec"]["parallelism"] for j in jobs(full)] == [3, 4]


def test_gpu_model_refusals(k8s_study, proxy, token) -> None:
    _, study = k8s_study
    refused(study, r"gpu_model 'gpu_a100' is not a GPU model of this cluster; the models "
                   r"are: gpu_3090, gpu_4090", use_gpu=True, gpu_model="gpu_a100")
    refused(study, "pass use_gpu=True too", gpu_model="gpu_3090")
    refused(study, "asks for 11 trials in all, more than n_trials=10", use_gpu=True,
            gpu_model={"gpu_3090": 5, "gpu_4090": 6})
    refused(study, r"gpu_model\['gpu_3090'\] must be a number of trials >= 1", use_gpu=True,
            gpu_model={"gpu_3090": 0})
    refused(study, "must be a model name or a dict", use_gpu=True, gpu_model=["gpu_3090"])
    refused(study, "over 3 Jobs .* parallelism=2 allows only 2 Pods at once", use_gpu=True,
            parallelism=2, gpu_model={"gpu_3090": 3, "gpu_4090": 4})
    bare = Controller(token, endpoint=proxy.endpoint,
                      launcher=ManifestsOnly()).create_study("no-models")
    refused(bare, "the launcher was made without gpu_models", use_gpu=True,
            gpu_model="gpu_3090")
    with pytest.raises(ValueError, match="not a Kubernetes label value"):
        KubernetesLauncher(gpu_models={"gpu_3090": "RTX 3090"})
    with pytest.raises(ValueError, match="not a Kubernetes label key"):
        KubernetesLauncher(gpu_models=GPU_MODELS, gpu_model_label="not a key")


def test_gpu_count_and_resources(k8s_study) -> None:
    launcher, study = k8s_study
    study.optimize(objective, n_trials=2, use_gpu=True, wait_option="WAIT_NO",
                   resources_requests={"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "2"})
    validate(launcher.sent)
    resources = pod_of(jobs(launcher.sent)[0])["containers"][0]["resources"]
    assert resources == {"requests": {"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "2"},
                         "limits": {"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "2"}}
    # the AIAuto README's blocks 10 and 11: requests alone, above the default limits
    study.optimize(objective, n_trials=2, use_gpu=True, wait_option="WAIT_NO",
                   resources_requests={"cpu": "2", "memory": "4Gi"})
    validate(launcher.sent)
    resources = pod_of(jobs(launcher.sent)[0])["containers"][0]["resources"]
    assert resources["limits"] == {"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "1"}
    study.optimize(objective, n_trials=2, resources_limits={"cpu": "100m"},
                   wait_option="WAIT_NO")  # limits alone, below the default requests
    validate(launcher.sent)
    assert pod_of(jobs(launcher.sent)[0])["containers"][0]["resources"]["requests"] == \
        {"cpu": "100m", "memory": "256Mi"}
    study = study.controller.create_study("pods-refused")
    refused(study, r"resources_requests\['memory'\] = '8Gi' is more than resources_limits",
            resources_requests={"memory": "8Gi"}, resources_limits={"memory": "4Gi"})
    refused(study, "counted in whole GPUs", use_gpu=True,
            resources_requests={"nvidia.com/gpu": "0.5"})
    refused(study, "GPUs are asked for with use_gpu=True",
            resources_requests={"nvidia.com/gpu": "1"})


def test_image_pull_credentials_become_a_secret_owned_by_the_job(k8s_study) -> None:
    launcher, study = k8s_study
    launcher.image_pull_secrets = ("site-registry",)
    name = study.optimize(objective, n_trials=2, image_pull_registry="ghcr.io",
                          image_pull_username="me", image_pull_password="s3cret-pw",
                          wait_option="WAIT_NO")
    validate(launcher.sent)
    (job,) = jobs(launcher.sent)
    secrets = {m["metadata"]["name"]: m for m in launcher.sent if m["kind"] == "Secret"}
    base = job["metadata"]["name"]
    pull = secrets[f"{base}-pull"]
    assert pull["type"] == "kubernetes.io/dockerconfigjson"
    config = json.loads(base64.b64decode(pull["data"][".dockerconfigjson"]))
    assert config == {"auths": {"ghcr.io": {
        "username": "me", "password": "s3cret-pw",
        "auth": base64.b64encode(b"me:s3cret-pw").decode()}}}
    assert pod_of(job)["imagePullSecrets"] == [{"name": "site-registry"},
                                               {"name": f"{base}-pull"}]
    # nowhere else: not the ConfigMap, the Job (args, env), the token Secret, the study
    others = [m for m in launcher.sent if m is not pull]
    assert "s3cret-pw" not in json.dumps(others)
    assert "s3cret-pw" not in json.dumps(study.storage.get_study_system_attrs(study.study_id))
    assert "s3cret-pw" not in repr(batch(image_pull_registry="r", image_pull_username="u",
                                         image_pull_password="s3cret-pw"))
    assert name in json.dumps(job)
    owned = KubernetesLauncher().manifests(batch(image_pull_docker_config_json={"auths": {
        "ghcr.io": {"username": "a", "password": "b"}, "registry.example": {"auth": "eDp5"}}}),
        owner_uids=["uid-1"])
    validate(owned)
    pull = next(m for m in owned if m["kind"] == "Secret" and m["metadata"]["name"].endswith(
        "-pull"))
    assert pull["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    auths = json.loads(base64.b64decode(pull["data"][".dockerconfigjson"]))["auths"]
    assert auths["registry.example"] == {"auth": "eDp5"} and auths["ghcr.io"]["auth"] == "YTpi"


def test_image_pull_refusals_never_show_the_password(k8s_study) -> None:
    _, study = k8s_study
    for kwargs in ({"image_pull_registry": "ghcr.io", "image_pull_password": "pw-123"},
                   {"image_pull_username": "me"}, {"image_pull_registry": "ghcr.io",
                                                   "image_pull_username": "me",
                                                   "image_pull_password": ""}):
        with pytest.raises(ValueError, match="need all three") as e:
            study.optimize(objective, n_trials=1, wait_option="WAIT_NO", **kwargs)
        assert "pw-123" not in str(e.value)
    refused(study, "not both", image_pull_registry="r", image_pull_username="u",
            image_pull_password="p", image_pull_docker_config_json={"auths": {}})
    refused(study, "must be a Docker config", image_pull_docker_config_json={"ghcr.io": {}})
    with pytest.raises(ValueError, match=r"'ghcr\.io' needs 'username' and 'password'") as e:
        study.optimize(objective, wait_option="WAIT_NO", image_pull_docker_config_json={
            "auths": {"ghcr.io": {"password": "pw-456"}}})
    assert "pw-456" not in str(e.value)
    assert study.get_status()["count_total"] == 0 and study.launches == []


NAMES = ["simple_optimization", "pytorch_multiple_optimization", "CNN on CIFAR_10",
         "Test Study/한글", "한글", "---", "UPPER.case", "a" * 300, "-x-", "x" * 29 + "-y",
         "tab\tand\nnewline", "ok-name"]


@pytest.mark.parametrize("study_name", NAMES)
def test_any_study_name_maps_to_valid_object_names(study_name: str) -> None:
    launcher = KubernetesLauncher(namespace="hpo", gpu_models=GPU_MODELS)
    b = make_batch(study_name=study_name, use_gpu=True, n_trials=10,
                   pod=pod_options(n_trials=10, use_gpu=True, gpu_model={"gpu_3090": 2},
                                   image_pull_registry="r", image_pull_username="u",
                                   image_pull_password="p"))
    manifests = launcher.manifests(b)
    validate(manifests)
    for m in manifests:
        name = m["metadata"]["name"]
        assert DNS_LABEL.match(name) and len(name) <= 63, name
        assert m["metadata"]["annotations"]["optuna-grpc-storage/study"] == study_name
        if m["kind"] == "Job":  # Pods' hostnames: <job>-<completion index>
            assert len(f"{name}-{m['spec']['completions'] - 1}") <= 63
            args = pod_of(m)["containers"][0]["args"]
            assert args[args.index("--study") + 1] == study_name
    other = launcher.job_name(make_batch(study_name=study_name, batch_id="ba7c4000000f"))
    assert other != launcher.job_name(b)  # the batch id keeps them apart


def test_a_study_name_too_long_for_an_annotation_is_refused() -> None:
    with pytest.raises(ValueError, match="longer than the 4096 bytes"):
        KubernetesLauncher().manifests(make_batch(study_name="한" * 2000))


class Cluster(BaseHTTPRequestHandler):
    """The few API calls `launch` makes, recorded, answered as the API server would."""

    calls: list[tuple[str, str, dict[str, Any]]]
    objects: dict[str, dict[str, Any]]

    def _reply(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        self.calls.append((self.command, self.path, body))
        if self.command == "POST":
            body.setdefault("metadata", {})["uid"] = f"uid-{len(self.calls)}"
            self.objects[f"{self.path}/{body['metadata']['name']}"] = body
        elif self.command == "PATCH":
            body = self.objects[self.path]  # the object, as patched (suspend aside)
        out = json.dumps(body).encode()
        self.send_response(201 if self.command == "POST" else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_POST = do_PATCH = _reply

    def log_message(self, *args: Any) -> None:
        pass


def test_launch_sends_every_job_suspended_then_what_they_own_then_resumes() -> None:
    from kubernetes import client

    Cluster.calls, Cluster.objects = [], {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), Cluster)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        configuration = client.Configuration()
        configuration.host = f"http://127.0.0.1:{server.server_port}"
        launcher = KubernetesLauncher(namespace="hpo", gpu_models=GPU_MODELS,
                                      api_client=client.ApiClient(configuration))
        b = batch(n_trials=5, parallelism=3, use_gpu=True, gpu_model={"gpu_3090": 2},
                  image_pull_registry="r", image_pull_username="u", image_pull_password="p")
        launch: Launch = launcher.launch(b)
    finally:
        server.shutdown()
    calls = [(method, path.rsplit("/", 1)[-1] if method == "PATCH" else path.split("/")[-1],
              body) for method, path, body in Cluster.calls]
    base = launcher.job_name(b)
    assert [(m, what) for m, what, _ in calls] == [
        ("POST", "jobs"), ("POST", "jobs"), ("POST", "secrets"), ("POST", "secrets"),
        ("POST", "configmaps"), ("PATCH", f"{base}-g0"), ("PATCH", f"{base}-g1")]
    assert all(body["spec"]["suspend"] is True for m, what, body in calls[:2])
    for _, _, body in calls[2:5]:
        assert [o["uid"] for o in body["metadata"]["ownerReferences"]] == ["uid-1", "uid-2"]
    assert {calls[2][2]["type"], calls[3][2]["type"]} == {"Opaque",
                                                          "kubernetes.io/dockerconfigjson"}
    assert [body for _, _, body in calls[5:]] == [{"spec": {"suspend": False}}] * 2
    assert launch.names == [f"{base}-g0", f"{base}-g1"] and TOKEN not in repr(launch.__dict__)
