"""The Kubernetes manifests in deploy/k8s, checked without a cluster.

Built-in kinds are validated against Kubernetes' own OpenAPI schemas (kubernetes-validate,
strict: unknown fields fail). KubeRay's RayCluster is a custom resource those schemas do not
know, so the fields the operator reads are asserted one by one. The rest checks that the files
agree with each other and with the code: probe paths the app serves, Secret keys the example
holds, a config the server accepts, a grace period longer than the server's drain.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from packaging.specifiers import SpecifierSet

from modeldeploy.app import create_app
from modeldeploy.config import Config, parse_config
from modeldeploy.errors import ConfigError
from modeldeploy.plugins import get_catalog
from modeldeploy.registry import Registry
from modeldeploy.store import signing

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
#: The newest Kubernetes whose schemas kubernetes-validate ships (1.37 in its 1.37 release).
KUBERNETES_VERSION = "1.37.0"
#: KubeRay's custom resources, and kustomize's file, which no Kubernetes schema describes.
NOT_KUBERNETES = {"ray.io/v1", "kustomize.config.k8s.io/v1beta1"}
NOT_APPLIED = {"secret.example.yaml", "raycluster.yaml"}


def documents() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if document is not None:
                yield path.name, document


def find(kind: str, name: str | None = None, file: str | None = None) -> dict[str, Any]:
    found = [doc for path, doc in documents() if doc["kind"] == kind
             and (name is None or doc["metadata"]["name"] == name) and (file is None or path == file)]
    assert len(found) == 1, f"expected one {kind} {name or ''} in {file or 'deploy/k8s'}, found {len(found)}"
    return found[0]


def container(workload: dict[str, Any], index: int = 0) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]["containers"][index]


def available() -> dict[str, Any]:
    return {name: entry.wrapper_class for name, entry in get_catalog().models.items()}


def configmap_config(name: str, environ: dict[str, str] | None = None) -> Config:
    text = find("ConfigMap", name)["data"]["config.yaml"]
    return parse_config(yaml.safe_load(text), available(), environ=environ or {})


def dockerfile_runtime() -> dict[str, str]:
    """USER, VOLUME, EXPOSE and the ARG defaults of the Dockerfile (last stage wins)."""
    found: dict[str, str] = {}
    for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines():
        keyword, _, rest = line.strip().partition(" ")
        if keyword in ("USER", "VOLUME", "EXPOSE"):
            found[keyword] = rest.strip()
        elif keyword == "ARG" and "=" in rest:
            name, _, default = shlex.split(rest)[0].partition("=")
            found[name] = default
    return found


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


# --------------------------------------------------------------------------- schemas
def test_every_builtin_manifest_is_valid_kubernetes() -> None:
    checked = []
    for path, document in documents():
        if document["apiVersion"] in NOT_KUBERNETES:
            continue
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        checked.append(f"{path}:{document['kind']}")
    kinds = {entry.split(":")[1] for entry in checked}
    assert {"Deployment", "Service", "ConfigMap", "Secret", "HorizontalPodAutoscaler",
            "PodDisruptionBudget"} <= kinds, checked


def test_the_validation_is_strict() -> None:
    """A misspelt field fails: the test above would catch one in our files."""
    deployment = find("Deployment", "modeldeploy")
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_raycluster_pod_templates_are_valid_kubernetes() -> None:
    """The pod templates inside the RayCluster are plain Kubernetes: validate them as such."""
    cluster = find("RayCluster")
    templates = [cluster["spec"]["headGroupSpec"]["template"]]
    templates += [group["template"] for group in cluster["spec"]["workerGroupSpecs"]]
    for template in templates:
        kubernetes_validate.validate({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"},
                                      "template": template}, KUBERNETES_VERSION, strict=True)


def test_kustomization_applies_every_manifest_but_the_example_and_ray() -> None:
    kustomization = find("Kustomization")
    listed = set(kustomization["resources"])
    on_disk = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk - NOT_APPLIED
    version = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    assert kustomization["images"] == [{"name": "modeldeploy", "newTag": version}]
    assert container(find("Deployment", "modeldeploy"))["image"] == f"modeldeploy:{version}"


# --------------------------------------------------------------------------- the Deployment and the app
@pytest.fixture(scope="module")
def deployment() -> dict[str, Any]:
    return find("Deployment", "modeldeploy")


def probe_status(path: str, models_loaded: bool) -> int:
    """GET ``path`` on the real app, over a registry with one model that is (or is not) loaded."""
    if models_loaded:
        registry = Registry(parse_config({"serve": []}))
        registry.start(background=False)
    else:
        registry = Registry(parse_config({"serve": ["sentiment"]}))  # never started: still loading
    try:
        return create_app(registry=registry).test_client().get(path).status_code
    finally:
        registry.close(timeout=0)


def test_probes_hit_routes_the_app_serves(deployment: dict[str, Any]) -> None:
    server = container(deployment)
    live, ready = server["livenessProbe"]["httpGet"]["path"], server["readinessProbe"]["httpGet"]["path"]
    assert server["startupProbe"]["httpGet"]["path"] == live
    # liveness answers while models load (a restart would only start the loading again) ...
    assert probe_status(live, models_loaded=False) == 200
    # ... readiness holds traffic back until they are loaded
    assert probe_status(ready, models_loaded=False) == 503
    assert probe_status(ready, models_loaded=True) == 200
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert server[probe]["httpGet"]["port"] == "http"
    startup = server["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120, "time to import torch on a slow node"


def test_deployment_matches_the_image(deployment: dict[str, Any]) -> None:
    image = dockerfile_runtime()
    pod = deployment["spec"]["template"]["spec"]
    server = container(deployment)
    uid, _, gid = image["USER"].partition(":")
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (int(uid), int(gid))
    args = server["args"]
    assert args[0] == "serve" and flag(args, "--port") == image["EXPOSE"]
    assert server["ports"] == [{"name": "http", "containerPort": int(image["EXPOSE"]), "protocol": "TCP"}]
    mounts = {mount["mountPath"]: mount for mount in server["volumeMounts"]}
    volume = yaml.safe_load(image["VOLUME"])[0]
    assert volume in mounts, "the model cache volume of the image must be mounted"
    config_path = Path(flag(args, "--config"))
    assert mounts[str(config_path.parent)]["readOnly"] is True
    config_volume = next(v for v in pod["volumes"] if v["name"] == mounts[str(config_path.parent)]["name"])
    configmap = find("ConfigMap", config_volume["configMap"]["name"])
    assert config_path.name in configmap["data"]
    if server["securityContext"].get("readOnlyRootFilesystem"):
        assert "/tmp" in mounts, "a read-only root still needs a writable /tmp"


def test_deployment_leaves_the_replica_count_to_the_hpa(deployment: dict[str, Any]) -> None:
    hpa = find("HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == ("apps/v1", "Deployment", "modeldeploy")
    assert "replicas" not in deployment["spec"], "kubectl apply would reset what the HPA chose"
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    assert [metric["resource"]["name"] for metric in hpa["spec"]["metrics"]] == ["cpu"]
    assert "cpu" in container(deployment)["resources"]["requests"], "CPU utilization is a share of the request"
    pdb = find("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"], "else no node could ever be drained"
    rolling = deployment["spec"]["strategy"]["rollingUpdate"]
    assert rolling["maxUnavailable"] == 0, "an old pod stays until its replacement has loaded its models"


def test_service_reaches_the_container_port(deployment: dict[str, Any]) -> None:
    service = find("Service", "modeldeploy")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    ports = {port["name"]: port["containerPort"] for port in container(deployment)["ports"]}
    [port] = service["spec"]["ports"]
    assert port["port"] == 80 and ports[port["targetPort"]] == 8080


def test_grace_period_outlasts_the_drain(deployment: dict[str, Any]) -> None:
    config = configmap_config("modeldeploy-config")
    pod = deployment["spec"]["template"]["spec"]
    pause = container(deployment)["lifecycle"]["preStop"]["exec"]["command"]
    assert pause[0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] > int(pause[1]) + config.server.shutdown_grace_seconds


def test_configmap_config_is_what_the_server_accepts() -> None:
    config = configmap_config("modeldeploy-config")
    assert config.demo_fallback is False and config.server.admin_token == ""
    token = "t" * 32
    configured = configmap_config("modeldeploy-config", {"MODELDEPLOY_ADMIN_TOKEN": token,
                                                         "MODELDEPLOY_TORCH_THREADS": "4"})
    assert configured.server.admin_token == token and configured.server.torch_threads == 4


def test_environment_comes_from_the_secret_and_the_cpu_limit(deployment: dict[str, Any]) -> None:
    env = {item["name"]: item for item in container(deployment)["env"]}
    assert signing.SIGNING_KEY_ENV in env
    # the variable the config interpolates for server.admin_token is the one the Secret fills
    text = find("ConfigMap", "modeldeploy-config")["data"]["config.yaml"]
    [admin_variable] = re.findall(r"admin_token: \$\{(\w+)", text)
    assert "secretKeyRef" in env[admin_variable]["valueFrom"]
    [threads_variable] = re.findall(r"torch_threads: \$\{(\w+)", text)
    field = env[threads_variable]["valueFrom"]["resourceFieldRef"]
    assert field["resource"] == "limits.cpu" and field["containerName"] == container(deployment)["name"]
    assert "cpu" in container(deployment)["resources"]["limits"]


def secret_refs() -> list[tuple[str, str, str]]:
    """(file, secret name, key) of every secretKeyRef in the manifests."""
    refs: list[tuple[str, str, str]] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            if "secretKeyRef" in node:
                refs.append((path, node["secretKeyRef"]["name"], node["secretKeyRef"]["key"]))
            for value in node.values():
                walk(value, path)
        elif isinstance(node, list):
            for value in node:
                walk(value, path)

    for path, document in documents():
        walk(document, path)
    return refs


def test_secret_references_exist_in_the_example_or_come_from_kuberay() -> None:
    example = find("Secret", file="secret.example.yaml")
    cluster = find("RayCluster")
    refs = secret_refs()
    assert len(refs) >= 4
    for path, name, key in refs:
        if name == example["metadata"]["name"]:
            assert key in example["stringData"], f"{path}: key {key} is not in the example Secret"
        else:  # the token KubeRay generates for authOptions.mode: token, named after the cluster
            assert (name, key) == (cluster["metadata"]["name"], "auth_token"), f"{path}: unknown Secret {name}"
            assert cluster["spec"]["authOptions"] == {"mode": "token"}


def test_example_secret_placeholders_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Applied unedited, the example cannot start a server with a guessable admin token."""
    values = find("Secret", file="secret.example.yaml")["stringData"]
    with pytest.raises(ConfigError):
        parse_config({"server": {"admin_token": values["admin-token"]}})
    monkeypatch.setenv(signing.SIGNING_KEY_ENV, values["signing-key"])
    with pytest.raises(ConfigError):
        signing.current_key()


# --------------------------------------------------------------------------- the Ray cluster
@pytest.fixture(scope="module")
def cluster() -> dict[str, Any]:
    return find("RayCluster")


def test_raycluster_has_what_kuberay_reads(cluster: dict[str, Any]) -> None:
    assert (cluster["apiVersion"], cluster["kind"]) == ("ray.io/v1", "RayCluster")
    spec = cluster["spec"]
    allowed = {"rayVersion", "enableInTreeAutoscaling", "autoscalerOptions", "authOptions", "headGroupSpec",
               "workerGroupSpecs"}
    assert set(spec) <= allowed, set(spec) - allowed
    head = spec["headGroupSpec"]
    assert set(head) == {"rayStartParams", "template"}
    assert all(isinstance(value, str) for value in head["rayStartParams"].values()), "ray start flags are strings"
    assert head["rayStartParams"]["num-cpus"] == "0", "model replicas belong on the workers"
    ray_container = head["template"]["spec"]["containers"][0]
    ports = {port["name"]: port["containerPort"] for port in ray_container["ports"]}
    assert ports == {"gcs-server": 6379, "dashboard": 8265, "client": 10001, "serve": 8000}
    assert spec["workerGroupSpecs"]
    for group in spec["workerGroupSpecs"]:
        assert set(group) <= {"groupName", "replicas", "minReplicas", "maxReplicas", "rayStartParams", "template"}
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", group["groupName"])
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        assert isinstance(group["rayStartParams"], dict)
        assert all(isinstance(value, str) for value in group["rayStartParams"].values())
        worker = group["template"]["spec"]["containers"][0]
        assert worker["image"] == ray_container["image"]
        assert worker["resources"]["requests"] == worker["resources"]["limits"], "Ray counts what the pod is given"


def test_ray_version_is_the_image_s_and_the_extra_s(cluster: dict[str, Any]) -> None:
    version = cluster["spec"]["rayVersion"]
    assert version == dockerfile_runtime()["RAY_VERSION"]
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    [ray] = [spec for spec in extra["optional-dependencies"]["ray"] if spec.startswith("ray[")]
    assert version in SpecifierSet(ray.split("]", 1)[1]), f"{version} is outside {ray}"


def test_ray_driver_joins_the_cluster_and_stays_alone(cluster: dict[str, Any]) -> None:
    driver = find("Deployment", "modeldeploy-ray-driver")
    server = container(driver)
    args = server["args"]
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    ports = {port["name"]: port["containerPort"] for port in head["ports"]}
    assert flag(args, "--engine") == "ray"
    # Ray Client: KubeRay names the head's Service <cluster>-head-svc
    assert flag(args, "--address") == f"ray://{cluster['metadata']['name']}-head-svc:{ports['client']}"
    assert int(flag(args, "--port")) == ports["serve"]
    assert server["image"] == head["image"]
    env = {item["name"]: item for item in server["env"]}
    assert env["RAY_AUTH_MODE"]["value"] == "token" and "secretKeyRef" in env["RAY_AUTH_TOKEN"]["valueFrom"]
    # on SIGTERM a driver deletes the application: never two drivers, never an overlap
    assert driver["spec"]["replicas"] == 1 and driver["spec"]["strategy"] == {"type": "Recreate"}
    service = find("Service", "modeldeploy-ray-serve")
    assert service["spec"]["selector"] == {"ray.io/cluster": cluster["metadata"]["name"], "ray.io/node-type": "head"}
    assert [port["targetPort"] for port in service["spec"]["ports"]] == ["serve"]
    readiness = " ".join(server["readinessProbe"]["exec"]["command"])
    assert f"http://{service['metadata']['name']}/health/ready" in readiness


def test_ray_config_puts_every_replica_on_a_worker(cluster: dict[str, Any]) -> None:
    config = configmap_config("modeldeploy-ray-config")
    models = config.models or {}
    assert set(models) == set(available()), "every installed model has its Ray resources set"
    worker_cpus = min(int(group["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"])
                      for group in cluster["spec"]["workerGroupSpecs"])
    for name, model in models.items():
        assert 1 <= model.num_cpus <= worker_cpus, f"{name}: num_cpus {model.num_cpus}"
    driver = find("Deployment", "modeldeploy-ray-driver")
    assert driver["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > config.server.shutdown_grace_seconds
