"""The Kubernetes manifests in deploy/k8s, checked without a cluster.

Built-in kinds are validated against Kubernetes' own OpenAPI schemas (kubernetes-validate,
strict: unknown fields fail). KubeRay's RayCluster and RayService are custom resources those
schemas do not know, so the fields the operator reads are asserted one by one; the RayService's
Serve config is validated with Ray Serve's own schema and built with our builder. The rest
checks that the files agree with each other and with the code: probe paths the app serves,
Secret keys the example holds, a config the server accepts, a grace period longer than the
server's drain.
"""

from __future__ import annotations

import importlib
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
from modeldeploy.logs import LOG_FORMATS
from modeldeploy.plugins import get_catalog
from modeldeploy.registry import Registry
from modeldeploy.store import signing

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
#: The newest Kubernetes whose schemas kubernetes-validate ships (1.37 in its 1.37 release).
KUBERNETES_VERSION = "1.37.0"
#: KubeRay's custom resources, and kustomize's file, which no Kubernetes schema describes.
NOT_KUBERNETES = {"ray.io/v1", "kustomize.config.k8s.io/v1beta1"}
NOT_APPLIED = {"secret.example.yaml", "raycluster.yaml", "rayservice.yaml"}


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
    return get_catalog().wrapper_classes()


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


#: KubeRay's two ways to run our image: a bare cluster (plus our driver) and a RayService.
RAY_KINDS = ["RayCluster", "RayService"]


def ray_cluster_spec(kind: str) -> dict[str, Any]:
    """The RayClusterSpec of the RayCluster, or the one the RayService starts its clusters from."""
    resource = find(kind)
    return resource["spec"] if kind == "RayCluster" else resource["spec"]["rayClusterConfig"]


def ray_containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The Ray container of the head and of every worker group (KubeRay runs Ray in the first)."""
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    return [group["template"]["spec"]["containers"][0] for group in groups]


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


@pytest.mark.parametrize("kind", RAY_KINDS)
def test_ray_pod_templates_are_valid_kubernetes(kind: str) -> None:
    """The pod templates inside a RayCluster (or a RayService's cluster) are plain Kubernetes:
    validate them as such."""
    spec = ray_cluster_spec(kind)
    templates = [spec["headGroupSpec"]["template"]]
    templates += [group["template"] for group in spec["workerGroupSpecs"]]
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


#: The head's ports: the RayCluster's driver joins through Ray Client (10001); nothing joins a
#: RayService's cluster, so it leaves that door closed. KubeRay reads the dashboard in both.
HEAD_PORTS = {
    "RayCluster": {"gcs-server": 6379, "dashboard": 8265, "client": 10001, "serve": 8000},
    "RayService": {"gcs-server": 6379, "dashboard": 8265, "serve": 8000},
}


def test_raycluster_is_a_ray_io_v1_raycluster(cluster: dict[str, Any]) -> None:
    assert (cluster["apiVersion"], cluster["kind"]) == ("ray.io/v1", "RayCluster")


@pytest.mark.parametrize("kind", RAY_KINDS)
def test_ray_cluster_spec_has_what_kuberay_reads(kind: str) -> None:
    spec = ray_cluster_spec(kind)
    allowed = {"rayVersion", "enableInTreeAutoscaling", "autoscalerOptions", "authOptions", "headGroupSpec",
               "workerGroupSpecs"}
    assert set(spec) <= allowed, set(spec) - allowed
    head = spec["headGroupSpec"]
    assert set(head) == {"rayStartParams", "template"}
    assert all(isinstance(value, str) for value in head["rayStartParams"].values()), "ray start flags are strings"
    assert head["rayStartParams"]["num-cpus"] == "0", "model replicas belong on the workers"
    ray_container = head["template"]["spec"]["containers"][0]
    ports = {port["name"]: port["containerPort"] for port in ray_container["ports"]}
    assert ports == HEAD_PORTS[kind]
    assert spec["authOptions"] == {"mode": "token"}, "else anything that reaches the cluster runs code on it"
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


@pytest.mark.parametrize("kind", RAY_KINDS)
def test_ray_version_is_the_image_s_and_the_extra_s(kind: str) -> None:
    version = ray_cluster_spec(kind)["rayVersion"]
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


# --------------------------------------------------------------------------- the RayService
@pytest.fixture(scope="module")
def rayservice() -> dict[str, Any]:
    return find("RayService")


def only_application(service: dict[str, Any]) -> dict[str, Any]:
    """The one Serve application of the RayService's serveConfigV2 (KubeRay takes it as a string)."""
    text = service["spec"]["serveConfigV2"]
    assert isinstance(text, str), "serveConfigV2 is a YAML document inside a string"
    [application] = yaml.safe_load(text)["applications"]
    return application


def config_volume_for(container_spec: dict[str, Any], pod: dict[str, Any], path: str) -> dict[str, Any]:
    """The ConfigMap volume mounted (read-only) on the directory of ``path`` in this container."""
    mounts = {mount["mountPath"]: mount for mount in container_spec.get("volumeMounts", [])}
    directory = str(Path(path).parent)
    assert directory in mounts, f"{container_spec['name']}: nothing is mounted at {directory}"
    assert mounts[directory].get("readOnly") is True
    [volume] = [v for v in pod["volumes"] if v["name"] == mounts[directory]["name"]]
    assert "configMap" in volume, f"{container_spec['name']}: {directory} is not a ConfigMap"
    return volume


def rayservice_config_text(service: dict[str, Any]) -> str:
    """The config.yaml that the builder's ``args.config`` names, from the ConfigMap the head mounts."""
    path = only_application(service)["args"]["config"]
    head = service["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]
    volume = config_volume_for(head["containers"][0], head, path)
    return find("ConfigMap", volume["configMap"]["name"])["data"][Path(path).name]


def test_rayservice_has_what_kuberay_reads(rayservice: dict[str, Any]) -> None:
    assert (rayservice["apiVersion"], rayservice["kind"]) == ("ray.io/v1", "RayService")
    spec = rayservice["spec"]
    # the deprecated *UnhealthySecondThreshold fields are ignored by KubeRay: not here
    allowed = {"serveConfigV2", "rayClusterConfig", "upgradeStrategy", "rayClusterDeletionDelaySeconds",
               "serveService", "excludeHeadPodFromServeSvc"}
    assert set(spec) <= allowed, set(spec) - allowed
    name = rayservice["metadata"]["name"]
    # KubeRay refuses a RayService name that is not a DNS-1035 label of at most 47 characters
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 47, name
    # the Services KubeRay creates for it clash with nothing raycluster.yaml creates or names
    cluster = find("RayCluster")["metadata"]["name"]
    services = {doc["metadata"]["name"] for _, doc in documents() if doc["kind"] == "Service"}
    for created in (f"{name}-head-svc", f"{name}-serve-svc"):
        assert created != f"{cluster}-head-svc" and created not in services, created


def test_rayservice_serve_config_is_what_ray_serve_accepts(rayservice: dict[str, Any]) -> None:
    from ray.serve.schema import HTTPOptionsSchema, ServeApplicationSchema, ServeDeploySchema

    from modeldeploy.ray_engine.deployments import APP_NAME

    document = yaml.safe_load(rayservice["spec"]["serveConfigV2"])
    ServeDeploySchema.model_validate(document)
    # Serve ignores keys it does not know (forward compatibility): a misspelt one would be lost
    application = only_application(rayservice)
    for mapping, schema in ((document, ServeDeploySchema), (document["http_options"], HTTPOptionsSchema),
                            (application, ServeApplicationSchema)):
        assert set(mapping) <= set(schema.model_fields), set(mapping) - set(schema.model_fields)
    assert application["import_path"] == "modeldeploy.ray_engine.builder:app_builder"
    assert application["route_prefix"] == "/"
    assert application["name"] == APP_NAME, "the name `serve --engine ray` deploys under"
    assert application["args"]["log_format"] in LOG_FORMATS, "each replica applies it: a typo fails there"
    # KubeRay's serve Service targets the head's `serve` port; the proxies must listen on it
    head = rayservice["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    ports = {port["name"]: port["containerPort"] for port in head["ports"]}
    assert document["http_options"]["port"] == ports["serve"]
    assert document["http_options"]["host"] == "0.0.0.0"


def test_rayservice_import_path_resolves(rayservice: dict[str, Any]) -> None:
    """Serve imports it on the cluster; an import error there only shows as DEPLOY_FAILED."""
    module_name, _, attribute = only_application(rayservice)["import_path"].partition(":")
    builder = getattr(importlib.import_module(module_name), attribute)
    assert callable(builder)


def test_rayservice_config_is_mounted_on_every_ray_pod(rayservice: dict[str, Any]) -> None:
    """Serve may build the application on any node: the config file is on each of them, from
    one ConfigMap, along with the signing key the replicas verify artifacts with."""
    path = only_application(rayservice)["args"]["config"]
    spec = rayservice["spec"]["rayClusterConfig"]
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    assert len(groups) >= 2
    configmaps = set()
    for group in groups:
        pod = group["template"]["spec"]
        ray_container = pod["containers"][0]
        configmaps.add(config_volume_for(ray_container, pod, path)["configMap"]["name"])
        env = {item["name"]: item for item in ray_container.get("env", [])}
        assert env[signing.SIGNING_KEY_ENV]["valueFrom"]["secretKeyRef"]["name"] == "modeldeploy-secrets"
    [name] = configmaps
    assert name != "modeldeploy-ray-config", "raycluster.yaml owns that ConfigMap; both may be applied"


def test_rayservice_config_puts_every_replica_on_a_worker(rayservice: dict[str, Any]) -> None:
    config = parse_config(yaml.safe_load(rayservice_config_text(rayservice)), available(), environ={})
    models = config.models or {}
    assert set(models) == set(available()), "every installed model has its Ray resources set"
    spec = rayservice["spec"]["rayClusterConfig"]
    worker_cpus = min(int(c["resources"]["limits"]["cpu"]) for c in ray_containers(spec)[1:])
    for name, model in models.items():
        assert 1 <= model.num_cpus <= worker_cpus, f"{name}: num_cpus {model.num_cpus}"


def test_rayservice_builder_builds_the_configmap_s_application(rayservice: dict[str, Any],
                                                               tmp_path: Path) -> None:
    """What Serve's controller does with serveConfigV2, minus the cluster: binding deployments
    is local, and no model loads."""
    from ray.serve import Application

    from modeldeploy.ray_engine.builder import app_builder

    config_file = tmp_path / "config.yaml"
    config_file.write_text(rayservice_config_text(rayservice), encoding="utf-8")
    args = {**only_application(rayservice)["args"], "config": str(config_file)}
    assert isinstance(app_builder(args), Application)


def test_rayservice_builder_refuses_a_model_that_is_not_installed(tmp_path: Path) -> None:
    """The control for the test above: the builder does read the file and check its models."""
    from modeldeploy.ray_engine.builder import app_builder

    config_file = tmp_path / "config.yaml"
    config_file.write_text("models:\n  not-an-installed-model:\n    num_cpus: 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not-an-installed-model"):
        app_builder({"config": str(config_file)})
