"""deploy/: every manifest passes `kubernetes-validate --strict`, the Prometheus Operator
resources match their schema, the rendered YAML is what kustomize renders, the manifests say
what the issue asks (replicas, probes, h2c, PDB, HPA, NetworkPolicy, ServiceMonitor, Redis
with AOF on a PVC), and the Dockerfiles only use what the repository has."""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import re
import shlex
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import referencing
import yaml
from kubernetes_validate import utils as kv_utils

from storage_proxy import metrics
from storage_proxy.cli import build_parser
from storage_proxy.config import add_serve_arguments, env_name
from storage_proxy.process.health import LIVENESS_SERVICE
from storage_proxy.redis.urls import parse_url

ROOT = Path(__file__).resolve().parent.parent
KUBE = ROOT / "deploy" / "kubernetes"
DOCKER = ROOT / "deploy" / "docker"
OVERLAYS = sorted(p.name for p in (KUBE / "overlays").iterdir() if p.is_dir())
RENDERED = [KUBE / "rendered" / f"{name}.yaml" for name in OVERLAYS]
USER_NAMESPACE = KUBE / "rendered" / "user-namespace.yaml"  # deploy/kubernetes/user-namespace
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
OLDEST_KUBERNETES = "1.27.0"  # gRPC probes are GA from 1.27


def load(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}"
    return found[0]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_every_overlay_is_rendered_and_every_base_file_is_used() -> None:
    assert OVERLAYS == ["dev", "production"]
    assert sorted(p.stem for p in (KUBE / "rendered").glob("*.yaml")) == [
        *OVERLAYS, "user-namespace"]
    for part in ("base", "user-namespace"):
        kustomization = yaml.safe_load((KUBE / part / "kustomization.yaml").read_text())
        files = {p.name for p in (KUBE / part).glob("*.yaml")} - {"kustomization.yaml"}
        assert set(kustomization["resources"]) == files


@pytest.mark.parametrize("version", [OLDEST_KUBERNETES, kv_utils.latest_version()])
def test_manifests_pass_kubernetes_validate_strict(version: str) -> None:
    files = [*RENDERED, USER_NAMESPACE, *sorted((KUBE / "base").glob("*.yaml")),
             *sorted((KUBE / "user-namespace").glob("*.yaml")),
             *sorted(KUBE.glob("overlays/*/namespace.yaml")),
             *sorted((KUBE / "tools").glob("*.yaml"))]
    files = [f for f in files if f.name != "kustomization.yaml"]
    out = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", "-k", version,
         *map(str, files)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    docs = [d for f in files for d in load(f)]
    passed = [line for line in lines if line.startswith("INFO") and " passed " in line]
    assert len(passed) == len([d for d in docs if d["kind"] not in CRD_KINDS])
    # The only resources it cannot check are the custom ones; the next test checks those.
    for line in lines:
        assert line.startswith("INFO") or (line.startswith("WARN") and any(
            f"kind {k} " in line for k in CRD_KINDS)), line


def test_strict_validation_rejects_a_misspelt_field() -> None:
    """The check above can fail: a field name Kubernetes does not know is an error."""
    deployment = copy.deepcopy(find(load(RENDERED[0]), "Deployment", "storage-proxy"))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")  # wrong capitalisation
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, kv_utils.latest_version(), strict=True)


def _crd_validator(kind: str, schema: str = "monitoring.coreos.com-v1.json"
                   ) -> jsonschema.Validator:
    ours = json.loads((Path(__file__).parent / "schemas" / schema).read_text())
    k8s_defs = kv_utils.schema_contents(
        f"kubernetes-json-schema/v{kv_utils.latest_version()}-local-strict/_definitions.json",
        kv_utils.latest_version())
    registry = referencing.Registry().with_resources([
        (ours["$id"], referencing.Resource.from_contents(ours)),
        ("https://kubernetes.io/api/_definitions.json",
         referencing.Resource.from_contents(k8s_defs)),
    ])
    return jsonschema.Draft202012Validator({"$ref": f"{ours['$id']}#/$defs/{kind}"},
                                           registry=registry)


@pytest.mark.parametrize("kind", sorted(CRD_KINDS))
def test_prometheus_operator_resources_match_their_schema(kind: str) -> None:
    validator = _crd_validator(kind)
    docs = [d for f in RENDERED for d in load(f) if d["kind"] == kind]
    assert len(docs) == len(RENDERED)
    for doc in docs:
        errors = [e.message for e in validator.iter_errors(doc)]
        assert not errors, errors
    broken = copy.deepcopy(docs[0])
    broken["spec"]["unexpected"] = True
    assert not validator.is_valid(broken)


def test_the_cert_manager_certificate_is_valid_and_names_the_services() -> None:
    validator = _crd_validator("Certificate", "cert-manager.io-v1.json")
    (certificate,) = load(KUBE / "tls" / "proxy-certificate.yaml")
    errors = [e.message for e in validator.iter_errors(certificate)]
    assert not errors, errors
    broken = copy.deepcopy(certificate)
    broken["spec"]["dnsName"] = broken["spec"].pop("dnsNames")  # misspelt
    assert not validator.is_valid(broken)
    docs = load(RENDERED[1])
    namespace = docs[0]["metadata"]["name"]
    for service in ("storage-proxy", "storage-proxy-headless"):
        find(docs, "Service", service)
        assert f"{service}.{namespace}.svc" in certificate["spec"]["dnsNames"]
    assert "server auth" in certificate["spec"]["usages"]


def test_servicemonitor_schema_rejects_a_bad_interval() -> None:
    monitor = copy.deepcopy(find(load(RENDERED[0]), "ServiceMonitor", "storage-proxy"))
    monitor["spec"]["endpoints"][0]["interval"] = "15 seconds"
    assert not _crd_validator("ServiceMonitor").is_valid(monitor)


@pytest.mark.skipif(shutil.which("kubectl") is None,
                    reason="kubectl (which embeds kustomize) is not installed")
def test_rendered_yaml_is_what_kustomize_renders() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "render_manifests.py"),
                          "--check"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("rendered", RENDERED, ids=lambda p: p.stem)
def test_manifests_say_what_the_issue_asks(rendered: Path) -> None:
    docs = load(rendered)
    namespace = find(docs, "Namespace", docs[0]["metadata"]["name"])["metadata"]["name"]
    assert all(d["metadata"].get("namespace") == namespace for d in docs[1:])
    config = find(docs, "ConfigMap", "storage-proxy")["data"]

    deploy = find(docs, "Deployment", "storage-proxy")
    spec, pod = deploy["spec"], deploy["spec"]["template"]["spec"]
    proxy_labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert selects(spec["selector"]["matchLabels"], proxy_labels)
    assert spec["replicas"] >= 2
    (container,) = pod["containers"]
    assert {p["containerPort"] for p in container["ports"]} == {13000, 9464}
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind])
    readiness, liveness = container["readinessProbe"], container["livenessProbe"]
    assert readiness["grpc"] == {"port": 13000}  # the overall health: Redis answers
    # One slow probe or one slow moment of Redis does not take every replica out at once.
    assert readiness["failureThreshold"] >= 2
    assert float(config["STORAGE_PROXY_REDIS_UNREADY_SECONDS"]) >= readiness["periodSeconds"]
    assert liveness["grpc"] == {"port": 13000, "service": LIVENESS_SERVICE}
    assert container["startupProbe"]["grpc"]["service"] == LIVENESS_SERVICE
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert container["securityContext"] == {"allowPrivilegeEscalation": False,
                                            "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}}
    anti = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert selects(anti[0]["podAffinityTerm"]["labelSelector"]["matchLabels"], proxy_labels)
    drain = float(config["STORAGE_PROXY_DRAIN_SECONDS"])
    grace = float(config["STORAGE_PROXY_GRACE_SECONDS"])
    assert pod["terminationGracePeriodSeconds"] > drain + grace
    # Liveness must not fire during a normal drain.
    assert liveness["periodSeconds"] * liveness["failureThreshold"] > drain + grace

    # Every STORAGE_PROXY_* variable is a real flag of `storage-proxy serve`.
    serve = argparse.ArgumentParser(add_help=False)
    add_serve_arguments(serve)
    known = {env_name(a.option_strings[0]) for a in serve._actions}
    used = set(config) | {e["name"] for e in container["env"]}
    assert {v for v in used if v.startswith("STORAGE_PROXY_")} <= known
    env = {e["name"]: e for e in container["env"]}
    target = parse_url(env["STORAGE_PROXY_REDIS_URL"]["value"])
    assert target.kind == "standalone" and "storage-redis:6379" in target.describe()
    # The Redis password: from the mounted Secret, not in the URL, an env var or a command line.
    assert "@" not in env["STORAGE_PROXY_REDIS_URL"]["value"]
    assert not any("valueFrom" in e for e in container["env"])
    password_file = Path(env["STORAGE_PROXY_REDIS_PASSWORD_FILE"]["value"])
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == str(
        password_file.parent))
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == "storage-redis"
    assert volume["secret"]["items"] == [{"key": "password", "path": password_file.name}]

    services = [d for d in docs if d["kind"] == "Service"
                and selects(d["spec"]["selector"], proxy_labels)]
    assert sorted(s["metadata"]["name"] for s in services) == ["storage-proxy",
                                                             "storage-proxy-headless"]
    for service in services:
        grpc_port = next(p for p in service["spec"]["ports"] if p["port"] == 13000)
        assert grpc_port["appProtocol"] == "kubernetes.io/h2c"
    assert find(docs, "Service", "storage-proxy-headless")["spec"]["clusterIP"] == "None"

    pdb = find(docs, "PodDisruptionBudget", "storage-proxy")
    assert selects(pdb["spec"]["selector"]["matchLabels"], proxy_labels)
    hpa = find(docs, "HorizontalPodAutoscaler", "storage-proxy")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": "storage-proxy"}
    assert 2 <= hpa["spec"]["minReplicas"] <= spec["replicas"] <= hpa["spec"]["maxReplicas"]

    policy = find(docs, "NetworkPolicy", "storage-proxy")["spec"]
    assert selects(policy["podSelector"]["matchLabels"], proxy_labels)
    grpc_rule = next(r for r in policy["ingress"] if r["ports"] == [{"port": 13000,
                                                                     "protocol": "TCP"}])
    assert grpc_rule["from"] == [
        {"namespaceSelector": {}, "podSelector": {
            "matchLabels": {"optuna-grpc-storage/client": "true"}}},
        {"namespaceSelector": {"matchLabels": {"optuna-grpc-storage/ingress": "true"}}}]
    ingress = find(load(KUBE / "tools" / "proxy-ingress.yaml"), "Ingress", "storage-proxy")
    (rule,) = ingress["spec"]["rules"]
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "storage-proxy", "port": {"number": 13000}}
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/backend-protocol"] == "GRPC"
    # nginx limits a whole stream's body: any limit would end a long Session stream.
    assert annotations["nginx.ingress.kubernetes.io/proxy-body-size"] == "0"
    assert ingress["spec"]["tls"][0]["hosts"] == [rule["host"]]

    # The proxy binds loopback by default; in the Pod both ports must listen on its address
    # (Prometheus scrapes the Pod IP), and the NetworkPolicy lets only Prometheus reach 9464.
    assert config["STORAGE_PROXY_HOST"] == config["STORAGE_PROXY_METRICS_BIND"] == "0.0.0.0"
    metrics_rule = next(r for r in policy["ingress"] if r["ports"] == [{"port": 9464,
                                                                        "protocol": "TCP"}])
    assert all("namespaceSelector" in f and f["namespaceSelector"] for f in
               metrics_rule["from"])

    # The ServiceMonitor scrapes exactly one Service (no double counting) on its metrics port.
    monitor = find(docs, "ServiceMonitor", "storage-proxy")["spec"]
    scraped = [s for s in docs if s["kind"] == "Service"
               and selects(monitor["selector"]["matchLabels"], s["metadata"]["labels"])]
    assert [s["metadata"]["name"] for s in scraped] == ["storage-proxy"]
    port_names = {p["name"] for p in scraped[0]["spec"]["ports"]}
    assert all(e["port"] in port_names for e in monitor["endpoints"])

    redis = find(docs, "StatefulSet", "storage-redis")
    redis_conf = find(docs, "ConfigMap", "storage-redis")["data"]["redis.conf"]
    assert "appendonly yes" in redis_conf and "maxmemory-policy noeviction" in redis_conf
    redis_container = redis["spec"]["template"]["spec"]["containers"][0]
    limit_env = next(e for e in redis_container["env"] if e["name"] == "REDIS_MEMORY_LIMIT_MB")
    assert limit_env["valueFrom"]["resourceFieldRef"]["resource"] == "limits.memory"
    command_line, _, stdin = redis_container["args"][0].partition("<<EOF\n")
    assert "REDIS_PASSWORD" not in command_line and "requirepass" not in command_line
    assert command_line.split()[:3] == ["exec", "redis-server", "-"]  # config from stdin
    assert 'requirepass "$REDIS_PASSWORD"' in stdin
    assert "maxmemory $((REDIS_MEMORY_LIMIT_MB" in stdin  # a full Redis refuses, not OOM-killed
    (claim,) = redis["spec"]["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in
              redis["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
    assert f"dir {mounts[claim['metadata']['name']]}" in redis_conf
    assert f"include {mounts['config']}/redis.conf" in stdin
    restore = find(load(KUBE / "tools" / "redis-restore-pod.yaml"), "Pod", "storage-redis-restore")
    assert restore["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == (
        f"{claim['metadata']['name']}-{redis['metadata']['name']}-0")
    redis_policy = find(docs, "NetworkPolicy", "storage-redis")["spec"]
    backup = find(docs, "CronJob", "storage-redis-backup")["spec"]["jobTemplate"]["spec"]
    backup_labels = backup["template"]["metadata"]["labels"]
    # Redis admits exactly the proxies and the backup Job's Pods.
    assert redis_policy["ingress"][0]["from"] == [{"podSelector": {"matchLabels": {
        k: labels[k] for k in ("app.kubernetes.io/name", "app.kubernetes.io/component")}}}
        for labels in (proxy_labels, backup_labels)]
    assert redis_policy["ingress"][0]["ports"] == [{"port": 6379, "protocol": "TCP"}]
    # ...which the backup Pods are, in the policy's namespace, on the port the Job dials.
    assert selects(redis_policy["podSelector"]["matchLabels"],
                   redis["spec"]["template"]["metadata"]["labels"])
    assert any(selects(peer["podSelector"]["matchLabels"], backup_labels)
               for peer in redis_policy["ingress"][0]["from"])
    assert find(docs, "CronJob", "storage-redis-backup")["metadata"]["namespace"] == \
        find(docs, "NetworkPolicy", "storage-redis")["metadata"]["namespace"]
    backup_env = {e["name"]: e.get("value") for e in
                  backup["template"]["spec"]["containers"][0]["env"]}
    assert {"port": int(backup_env["REDIS_PORT"]), "protocol": "TCP"} in \
        redis_policy["ingress"][0]["ports"]


def test_alert_rules_only_use_metrics_the_proxy_exports() -> None:
    exported = {m._name for m in vars(metrics).values()
                if hasattr(m, "_name") and hasattr(m, "_type")}
    rules = find(load(RENDERED[0]), "PrometheusRule", "storage-proxy")
    names = set()
    for group in rules["spec"]["groups"]:
        for rule in group["rules"]:
            names |= set(re.findall(r"storage_proxy_[a-z_]+", str(rule["expr"])))
    assert len(names) >= 5
    for name in names:
        base = re.sub(r"_(total|bucket|count|sum)$", "", name)
        assert base in exported, name


# --- Dockerfiles ---------------------------------------------------------------------------

def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n\s*", " ", dockerfile.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


@pytest.mark.parametrize("name", ["proxy", "trial-runtime"])
def test_dockerfiles_use_only_what_the_repository_has(name: str) -> None:
    steps = instructions(DOCKER / f"{name}.Dockerfile")
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    for op, rest in steps:
        if op == "COPY" and not rest.startswith("--from"):
            *sources, _dest = rest.split()
            for source in sources:
                assert (ROOT / source).exists(), source
                assert source not in ignored, source
    extras = set(metadata.metadata("optuna-grpc-storage").get_all("Provides-Extra") or ())
    for op, rest in steps:
        if op == "RUN":
            for extra in re.findall(r"\[([a-z,]+)\]", rest):
                assert set(extra.split(",")) <= extras, extra
    users = [rest for op, rest in steps if op == "USER"]
    assert users == ["10001:10001"]  # the uid the Deployment runs as
    deploy = find(load(RENDERED[0]), "Deployment", "storage-proxy")
    assert deploy["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 10001


def test_proxy_image_runs_storage_proxy_serve() -> None:
    steps = dict(instructions(DOCKER / "proxy.Dockerfile"))
    command = [*json.loads(steps["ENTRYPOINT"]), *json.loads(steps["CMD"])]
    assert command == ["storage-proxy", "serve"]
    (script,) = metadata.entry_points(group="console_scripts", name="storage-proxy")
    assert script.value == "storage_proxy.cli:main"
    build_parser().parse_args(command[1:])  # a subcommand the CLI accepts
    assert set(steps["EXPOSE"].split()) == {"13000", "9464"}
    assert {"STORAGE_PROXY_HOST=0.0.0.0", "STORAGE_PROXY_METRICS_BIND=0.0.0.0"} <= set(
        steps["ENV"].split())  # a container listens on its own address
    deploy = find(load(RENDERED[0]), "Deployment", "storage-proxy")
    assert deploy["spec"]["template"]["spec"]["containers"][0]["args"] == command[1:]


def test_trial_runtime_image_runs_the_worker_module() -> None:
    steps = dict(instructions(DOCKER / "trial-runtime.Dockerfile"))
    command = json.loads(steps["CMD"])
    assert command[:2] == ["python", "-m"], shlex.join(command)
    module = command[2]
    assert module.startswith("optuna_grpc_storage.")
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} arrives with the controller/worker issue")


# --- what the notebook's KubernetesLauncher creates fits what deploy/ ships -----------------

def launcher_manifests() -> list[dict[str, Any]]:
    """A CPU batch and a GPU batch spread over two models (two Jobs)."""
    from optuna_grpc_storage import KubernetesLauncher
    from optuna_grpc_storage.runner.batch import Batch
    from optuna_grpc_storage.runner.objective import pack_objective
    from optuna_grpc_storage.runner.pod_options import PodOptions

    launcher = KubernetesLauncher(namespace="team-alice", gpu_models=["gpu_a", "gpu_b"])
    out = []
    for extra in ({}, {"use_gpu": True, "pod": PodOptions(gpu_model=(("gpu_a", 2),))}):
        batch = Batch(study_name="s", journal="default", batch_id="0123456789ab", n_trials=4,
                      parallelism=2, objective=pack_objective(len), endpoint="proxy:13000",
                      token="ogs_x_y", **extra)
        out += launcher.manifests(batch, owner_uids=["uid"] * (2 if extra else 1))
    return out


def test_the_launchers_pods_are_admitted_by_the_proxys_networkpolicy() -> None:
    """Issue 17, item 2: they lacked the label the shipped NetworkPolicy requires."""
    policy = find(load(KUBE / "base" / "proxy-networkpolicy.yaml"), "NetworkPolicy",
                  "storage-proxy")["spec"]
    grpc_rules = [r for r in policy["ingress"] if {"port": 13000, "protocol": "TCP"} in r["ports"]]
    pod_peers = [peer for rule in grpc_rules for peer in rule["from"] if "podSelector" in peer]
    assert pod_peers and all(peer.get("namespaceSelector") == {} for peer in pod_peers)
    jobs = [m for m in launcher_manifests() if m["kind"] == "Job"]
    assert len(jobs) == 3
    for job in jobs:
        labels = job["spec"]["template"]["metadata"]["labels"]
        assert any(selects(peer["podSelector"]["matchLabels"], labels) for peer in pod_peers), \
            labels


def launcher_permissions() -> set[tuple[str, str, str]]:
    """(API group, resource, verb) of every Kubernetes API call the launcher makes, read
    from its source, plus what its owner references need."""
    source = (ROOT / "optuna_grpc_storage" / "runner" / "launchers" / "kubernetes.py").read_text()
    verbs = {"create": "create", "read": "get", "list": "list", "patch": "patch",
             "delete": "delete", "replace": "update"}
    kinds = {"job": ("batch", "jobs"), "secret": ("", "secrets"),
             "config_map": ("", "configmaps")}
    needed = set()
    for verb, kind, status in re.findall(
            r"\.(create|read|list|patch|delete|replace)_namespaced_([a-z_]+?)(_status)?\(",
            source):
        group, resource = kinds[kind]
        needed.add((group, resource + ("/status" if status else ""), verbs[verb]))
    if any(ref.get("blockOwnerDeletion") for m in launcher_manifests()
           for ref in m["metadata"].get("ownerReferences", [])):
        needed.add(("batch", "jobs/finalizers", "update"))  # OwnerReferencesPermissionEnforcement
    return needed


def test_the_notebooks_role_allows_every_call_of_the_launcher() -> None:
    docs = load(USER_NAMESPACE)
    namespace = docs[0]["metadata"]["namespace"]
    assert all(d["metadata"]["namespace"] == namespace for d in docs)
    role = find(docs, "Role", "optuna-grpc-storage-launcher")
    granted = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"]
               for r in rule["resources"] for v in rule["verbs"]}
    needed = launcher_permissions()
    assert {("batch", "jobs", "create"), ("batch", "jobs/status", "get"),
            ("", "secrets", "create"), ("", "configmaps", "create")} <= needed
    assert needed <= granted, needed - granted
    assert not {v for g, r, v in granted if r == "secrets"} - {"create"}  # never read them
    binding = find(docs, "RoleBinding", "optuna-notebook-launcher")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}
    account = find(docs, "ServiceAccount", "optuna-notebook")["metadata"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["name"],
                                    "namespace": namespace}]


def test_the_default_runtime_images_are_what_deploy_builds(monkeypatch) -> None:
    """Issue 17, item 2: the launcher's default image was not what deploy/ built, on another
    Python than the notebook's."""
    from optuna_grpc_storage.protocol.version import __version__
    from optuna_grpc_storage.runner import images

    guide = (ROOT / "deploy" / "README.md").read_text()
    block = re.search(r"```sh\n(REG=.*?)```", guide, re.S).group(1)
    values = dict(re.findall(r"^(REG|VERSION)=(\S+)$", block, re.M))
    assert values["VERSION"] == __version__
    pythons = re.search(r"for PY in ([\d. ]+); do", block).group(1).split()
    assert images.PYTHON in pythons  # the Python these tests run on is among those built
    tags = re.findall(r"-t (\$REG/optuna-grpc-storage-runtime:\S+) \.", block)
    cpu = next(t for t in tags if t.endswith("-cpu"))
    gpu = next(t for t in tags if t.endswith("-cuda12"))
    repository = f"{values['REG']}/optuna-grpc-storage-runtime"
    monkeypatch.setenv(images.REPOSITORY_ENV, repository)
    monkeypatch.delenv(images.CPU_IMAGE_ENV, raising=False)
    monkeypatch.delenv(images.GPU_IMAGE_ENV, raising=False)

    def built(tag: str, python: str) -> str:
        return (tag.replace("$REG", values["REG"]).replace("$VERSION", __version__)
                .replace("$PY", python))

    assert images.cpu_image() == built(cpu, images.PYTHON)
    gpu_python = re.search(r"py([\d.]+)-cuda12", gpu).group(1)
    assert images.image_name("cuda12", gpu_python) == built(gpu, gpu_python)
    assert images.gpu_image() == built(gpu.replace(gpu_python, "$PY"), images.PYTHON)
    # The Dockerfile builds what its name says: its Python is a build argument, checked.
    dockerfile = (DOCKER / "trial-runtime.Dockerfile").read_text()
    default = re.search(r"^ARG PYTHON=([\d.]+)$", dockerfile, re.M).group(1)
    assert default in pythons and "FROM python:${PYTHON}-slim AS build" in dockerfile
    assert "assert v == '${PYTHON}'" in dockerfile
    assert f"optuna-grpc-storage-runtime:{__version__}-py3.12-cpu" in dockerfile


def test_the_backup_cronjob_reaches_redis_with_its_password_and_keeps_its_files() -> None:
    """Issue 17, item 13: "run it from a CronJob" had no manifest, and the Redis NetworkPolicy
    would have blocked one. (tests/test_backup_restore.py runs its script on real Redis.)"""
    for rendered in RENDERED:
        docs = load(rendered)
        cron = find(docs, "CronJob", "storage-redis-backup")["spec"]
        assert cron["concurrencyPolicy"] == "Forbid"
        pod = cron["jobTemplate"]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        env = {e["name"]: e for e in container["env"]}
        service = find(docs, "Service", "storage-redis")
        assert env["REDIS_HOST"]["value"] == service["metadata"]["name"]
        assert int(env["REDIS_PORT"]["value"]) in {p["port"] for p in service["spec"]["ports"]}
        redis_env = {e["name"]: e for e in find(docs, "StatefulSet", "storage-redis")["spec"][
            "template"]["spec"]["containers"][0]["env"]}
        assert env["REDISCLI_AUTH"]["valueFrom"] == redis_env["REDIS_PASSWORD"]["valueFrom"]
        assert "--rdb" in container["args"][0]
        (volume,) = pod["volumes"]
        claim = find(docs, "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
        assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
        mount = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}[volume["name"]]
        assert env["BACKUP_DIR"]["value"] == mount
        assert pod["securityContext"]["runAsNonRoot"] is True  # the namespace is `restricted`
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        helper = find(load(KUBE / "tools" / "redis-backups-pod.yaml"), "Pod",
                      "storage-redis-backups")  # to copy the backups off the cluster
        assert helper["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == \
            claim["metadata"]["name"]
