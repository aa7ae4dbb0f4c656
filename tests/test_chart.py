"""The Helm chart (charts/evalkube), checked with the real helm 3 and helm 4 binaries.

Every values set (the defaults and each charts/evalkube/ci/*.yaml) must lint strictly, render the
same bytes under both Helm majors, render only manifests that the official Kubernetes schemas
accept (1.30 and the newest kubernetes-validate knows), and only pods that meet the restricted Pod
Security Standard. The rest pins down the contract with the operator and the API: the EVALKUBE_*
settings, the RBAC each component gets, peering, probes, the catalog hook, the NOTES.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
import tarfile
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

import pss
import rbac
import tools

REPO = tools.REPO
CHART = REPO / "charts" / "evalkube"
CI_VALUES = sorted(p.name for p in (CHART / "ci").glob("*.yaml"))
VALUE_SETS = ["defaults", *CI_VALUES]
HELMS = ["helm3", "helm4"]
NAMESPACE = "evalkube"
RELEASE = "ek"
FULLNAME = f"{RELEASE}-evalkube"
# Custom resources kubernetes-validate has no schema for: the Prometheus Operator's ServiceMonitor
# and kopf's spec-less peering objects; the tests below check their fields.
NO_SCHEMA_KINDS = {"ServiceMonitor", "ClusterKopfPeering", "KopfPeering"}
K8S_VERSIONS = ["1.30", kubernetes_validate.latest_version()]
POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}


def helm(key: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(tools.path(key)), *args], capture_output=True, text=True, check=check, cwd=REPO)


def value_args(value_set: str) -> list[str]:
    return [] if value_set == "defaults" else ["-f", str(CHART / "ci" / value_set)]


@functools.cache
def render_text(helm_key: str = "helm4", *args: str) -> str:
    """`helm template` output for release ek in namespace evalkube, CRDs included."""
    return helm(helm_key, "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--include-crds", *args).stdout


def render(*args: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(render_text("helm4", *args)) if doc]


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]


def deployment(docs: list[dict[str, Any]], component: str) -> dict[str, Any]:
    (found,) = [
        d for d in find(docs, "Deployment") if d["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]
    return found


def service_account(docs: list[dict[str, Any]], component: str) -> str:
    return deployment(docs, component)["spec"]["template"]["spec"]["serviceAccountName"]


def container(docs: list[dict[str, Any]], component: str) -> dict[str, Any]:
    return deployment(docs, component)["spec"]["template"]["spec"]["containers"][0]


def env(ctr: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in ctr.get("env", [])}


# --- helm itself ------------------------------------------------------------------------------


@pytest.mark.parametrize("value_set", VALUE_SETS)
@pytest.mark.parametrize("helm_key", HELMS)
def test_helm_lint_strict(helm_key: str, value_set: str) -> None:
    result = helm(helm_key, "lint", "--strict", str(CHART), *value_args(value_set), check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("helm_key", HELMS)
def test_helm_package_holds_crds_schema_and_readme(helm_key: str, tmp_path: Path) -> None:
    helm(helm_key, "package", str(CHART), "--destination", str(tmp_path))
    (package,) = tmp_path.glob("evalkube-*.tgz")
    with tarfile.open(package) as tar:
        names = set(tar.getnames())
    for name in (
        "crds/evaljob.yaml",
        "crds/kopf-peering.yaml",
        "values.schema.json",
        "README.md",
        "templates/NOTES.txt",
    ):
        assert f"evalkube/{name}" in names


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_helm3_and_helm4_render_identical_bytes(value_set: str) -> None:
    assert render_text("helm3", *value_args(value_set)) == render_text("helm4", *value_args(value_set))


# --- every rendered manifest is valid Kubernetes and runs restricted pods -----------------------


@pytest.mark.parametrize("value_set", VALUE_SETS)
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_match_kubernetes_schemas_strictly(version: str, value_set: str) -> None:
    unvalidated = set()
    for doc in render(*value_args(value_set)):
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            unvalidated.add(doc["kind"])
        except kubernetes_validate.ValidationError as err:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {list(err.path)}: {err.message}")
    assert unvalidated <= NO_SCHEMA_KINDS


def test_strict_validation_catches_an_unknown_field() -> None:
    (doc,) = [d for d in render() if d["kind"] == "Service"]
    doc["spec"]["portz"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSIONS[0], strict=True)


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_pod_meets_the_restricted_pod_security_standard(value_set: str) -> None:
    pods = [
        (d["kind"], d["metadata"]["name"], d["spec"]["template"]["spec"])
        for d in render(*value_args(value_set))
        if d["kind"] in POD_TEMPLATE_KINDS
    ]
    assert pods
    for kind, name, spec in pods:
        assert pss.violations(spec) == [], f"{kind}/{name}"


def test_a_weakened_security_context_reaches_the_pods_and_is_caught() -> None:
    docs = render("--set", "securityContext.allowPrivilegeEscalation=true", "--set", "podSecurityContext.runAsUser=0")
    for component in ("api", "operator"):
        found = pss.violations(deployment(docs, component)["spec"]["template"]["spec"])
        assert any("allowPrivilegeEscalation" in v for v in found)
        assert any("runAsUser" in v for v in found)


def test_every_container_has_a_read_only_root_filesystem_and_resources() -> None:
    for doc in render():
        if doc["kind"] in POD_TEMPLATE_KINDS:
            for ctr in doc["spec"]["template"]["spec"]["containers"]:
                assert ctr["securityContext"]["readOnlyRootFilesystem"] is True
                assert ctr["resources"]["requests"] and ctr["resources"]["limits"]["memory"]


# --- values: schema, documentation ------------------------------------------------------------


@pytest.mark.parametrize("helm_key", HELMS)
@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--set", "operator.replicas=two"], "/operator/replicas"),
        (["--set-json", 'evaluator.nodeSelector={"gpu": true}'], "/evaluator/nodeSelector/gpu"),
        (["--set-json", 'watchNamespaces="team-a"'], "/watchNamespaces"),
        (["--set", "evaluator.image.pullPolicy=Sometimes"], "/evaluator/image/pullPolicy"),
        (["--set", "replicas=2"], "additional properties 'replicas'"),
        (["--set", "api.ingress.hostname=x"], "additional properties 'hostname'"),
        (["--set", "operator.resources.limit.cpu=1"], "additional properties 'limit'"),
    ],
)
def test_schema_rejects_wrong_types_and_unknown_keys(helm_key: str, args: list[str], error: str) -> None:
    result = helm(helm_key, "template", RELEASE, str(CHART), *args, check=False)
    assert result.returncode != 0
    assert error in result.stderr


def value_paths(values: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys of values.yaml: groups are walked into; Kubernetes objects are one value."""
    paths = []
    for key, value in values.items():
        path = prefix + key
        if isinstance(value, dict) and value and key not in {"resources", "podSecurityContext", "securityContext"}:
            paths.extend(value_paths(value, path + "."))
        else:
            paths.append(path)
    return paths


DEFAULT_VALUES = yaml.safe_load((CHART / "values.yaml").read_text())


def test_readme_lists_exactly_the_values() -> None:
    listed = re.findall(r"^\| `([^`]+)` \|", (CHART / "README.md").read_text(), re.MULTILINE)
    assert sorted(listed) == sorted(value_paths(DEFAULT_VALUES))


def test_values_yaml_documents_every_value() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = []
    stack: list[str] = []
    for number, line in enumerate(lines):
        match = re.match(r"^( *)([A-Za-z]\w*):", line)
        if not match:
            continue
        depth = len(match.group(1)) // 2
        stack[depth:] = [match.group(2)]
        if ".".join(stack) in value_paths(DEFAULT_VALUES) and not lines[number - 1].lstrip().startswith("#"):
            undocumented.append(".".join(stack))
    assert undocumented == []


def test_every_values_key_is_typed_in_the_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        return schema["definitions"][node["$ref"].split("/")[-1]] if "$ref" in node else node

    for path in value_paths(DEFAULT_VALUES):
        node = schema
        for key in path.split("."):
            node = resolve(node)
            assert node.get("additionalProperties") is False, path
            node = node["properties"][key]
        assert "type" in resolve(node) or "anyOf" in resolve(node), path


# --- the chart's parts ------------------------------------------------------------------------


def test_chart_crds_are_the_repository_crds() -> None:
    for name in ("evaljob.yaml", "checkpointmerge.yaml"):
        chart_crd = (CHART / "crds" / name).read_text()
        assert chart_crd == (REPO / "crds" / name).read_text(), f"charts/evalkube/crds/{name} is stale: run `make crds`"


def test_crds_are_rendered_with_the_chart() -> None:
    names = {d["metadata"]["name"] for d in find(render(), "CustomResourceDefinition")}
    assert names == {
        "evaljobs.evalkube.dev",
        "checkpointmerges.evalkube.dev",
        "clusterkopfpeerings.kopf.dev",
        "kopfpeerings.kopf.dev",
    }


def test_images_default_to_the_app_version_which_is_the_package_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert chart["appVersion"] == project["version"]
    docs = render()
    assert container(docs, "api")["image"] == f"ghcr.io/evalkube/evalkube:{chart['appVersion']}"
    assert container(docs, "operator")["image"] == f"ghcr.io/evalkube/evalkube:{chart['appVersion']}"
    assert env(container(docs, "operator"))["EVALKUBE_EVALUATOR_IMAGE"] == (
        f"ghcr.io/evalkube/evaluator:{chart['appVersion']}"
    )


#: The chart's default policy: the secure defaults of evalkube.policy.Policy, said explicitly.
DEFAULT_POLICY = '{"allowCustomTaskCode":false,"allowNodeSelector":false,"allowOnline":false,"allowTolerations":false,"allowTrustRemoteCode":false,"allowedImages":[],"maxGpus":8,"maxResources":{}}'


def test_operator_env_defaults() -> None:
    assert env(container(render(), "operator")) == {
        "POD_ID": {"fieldRef": {"fieldPath": "metadata.name"}},
        "EVALKUBE_EVALUATOR_IMAGE": "ghcr.io/evalkube/evaluator:0.1.0",
        "EVALKUBE_POLICY": DEFAULT_POLICY,
        "EVALKUBE_IMAGE_PULL_POLICY": "IfNotPresent",
        "EVALKUBE_EVALUATOR_SERVICE_ACCOUNT": f"{FULLNAME}-evaluator",
        "EVALKUBE_GPU_RESOURCE_NAME": "nvidia.com/gpu",
        "EVALKUBE_NODE_SELECTOR": "{}",
        "EVALKUBE_TOLERATIONS": "[]",
        "EVALKUBE_DEFAULT_RESOURCES": "{}",
        "EVALKUBE_SHM_SIZE": "8Gi",
        "EVALKUBE_SHARED_VOLUMES": "[]",
        "EVALKUBE_MERGE_MEMORY": "16Gi",
        "EVALKUBE_ALLOW_ONLINE": "false",
        "EVALKUBE_MAX_COMPLETED_JOBS": "200",
        "EVALKUBE_MAX_RUNNING": "0",
    }


def test_operator_settings_parse_the_rendered_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The chart and evalkube's OperatorSettings agree on every EVALKUBE_* variable."""
    from evalkube.operator.settings import OperatorSettings

    docs = render(
        "-f", str(CHART / "ci" / "kueue-storage-values.yaml"), "-f", str(CHART / "ci" / "namespaced-values.yaml")
    )
    variables = {k: v for k, v in env(container(docs, "operator")).items() if k.startswith("EVALKUBE_")}
    fields = {f"EVALKUBE_{name.upper()}" for name in OperatorSettings.model_fields}
    assert set(variables) <= fields
    for key, value in variables.items():
        monkeypatch.setenv(key, value)
    settings = OperatorSettings()
    assert settings.namespaces == ["team-a", "team-b"]
    assert settings.kueue_queue_name == "gpu-queue"
    assert settings.artifacts_pvc == "evalkube-artifacts"
    assert settings.model_cache_pvc == "evalkube-models"
    assert settings.allow_online is True
    assert settings.shm_size == "16Gi"
    assert settings.node_selector == {"nvidia.com/gpu.present": "true"}
    assert settings.tolerations == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert settings.default_resources == {"requests": {"cpu": "4", "memory": "32Gi"}, "limits": {"memory": "64Gi"}}
    assert settings.max_completed_jobs == 1_000_000
    assert settings.max_running == 8
    assert settings.evaluator_service_account == f"{FULLNAME}-evaluator"


def test_custom_images_and_pull_secrets_reach_every_pod() -> None:
    docs = render("-f", str(CHART / "ci" / "custom-images-values.yaml"))
    for component in ("api", "operator"):
        spec = deployment(docs, component)["spec"]["template"]["spec"]
        assert spec["imagePullSecrets"] == [{"name": "registry-creds"}]
        assert spec["containers"][0]["image"] == "registry.example.com/ml/evalkube:0.1.0-rc1"
        assert spec["containers"][0]["imagePullPolicy"] == "Always"
    operator_env = env(container(docs, "operator"))
    assert operator_env["EVALKUBE_EVALUATOR_IMAGE"] == "registry.example.com/ml/evalkube-evaluator:0.1.0-rc1-cuda12"
    assert operator_env["EVALKUBE_IMAGE_PULL_POLICY"] == "Never"
    assert operator_env["EVALKUBE_IMAGE_PULL_SECRETS"] == "registry-creds,hub-creds"
    assert operator_env["EVALKUBE_EVALUATOR_SERVICE_ACCOUNT"] == "eval-runner"
    assert operator_env["EVALKUBE_EXTRA"] == "1"
    assert {(sa["metadata"]["namespace"]) for sa in find(docs, "ServiceAccount", "eval-runner")} == {
        NAMESPACE,
        "research",
    }
    assert not find(docs, "Job")  # catalog disabled


def test_api_env_and_probes() -> None:
    docs = render()
    api = container(docs, "api")
    assert api["command"] == ["evalkube-api"]
    assert env(api) == {
        "EVALKUBE_API_HOST": "0.0.0.0",
        "EVALKUBE_API_PORT": "8000",
        "EVALKUBE_API_NAMESPACE": NAMESPACE,
        "EVALKUBE_CATALOG_CONFIGMAP": "evalkube-catalog",
        "EVALKUBE_API_AUTH": "kubernetes",
        "EVALKUBE_POLICY": DEFAULT_POLICY,
        "EVALKUBE_EVALUATOR_IMAGE": "ghcr.io/evalkube/evaluator:0.1.0",
        "EVALKUBE_API_AUTH_CACHE_SECONDS": "10",
        "EVALKUBE_API_RATE_LIMIT_PER_SECOND": "20",
        "EVALKUBE_API_RATE_LIMIT_BURST": "100",
        "EVALKUBE_SHARED_VOLUMES": "[]",
    }
    assert api["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    for probe in ("readinessProbe", "livenessProbe"):
        assert api[probe]["httpGet"] == {"path": "/health", "port": "http"}
    (service,) = find(docs, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert service["spec"]["selector"] == deployment(docs, "api")["spec"]["selector"]["matchLabels"]


def test_api_settings_parse_the_rendered_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The chart and evalkube's ApiSettings agree on every variable the chart sets."""
    from evalkube.api.settings import ApiSettings

    docs = render(
        "-f",
        str(CHART / "ci" / "namespaced-values.yaml"),
        "--set",
        "api.port=9000",
        "--set",
        "api.catalogConfigMap=my-catalog",
    )
    for key, value in env(container(docs, "api")).items():
        monkeypatch.setenv(key, value)
    settings = ApiSettings()
    assert (settings.host, settings.port, settings.namespace, settings.catalog_configmap) == (
        "0.0.0.0",
        9000,
        "team-a",
        "my-catalog",
    )


def test_one_shared_volumes_value_feeds_the_operator_and_the_api(monkeypatch: pytest.MonkeyPatch) -> None:
    from evalkube.api.settings import ApiSettings
    from evalkube.operator.settings import OperatorSettings

    volumes = '[{"claimName":"ckpt","mountPath":"/shared","readOnly":true},{"claimName":"out","mountPath":"/out","subPath":"evals"}]'
    docs = render("--set-json", f"evaluator.sharedVolumes={volumes}", "--set", "evaluator.modelCachePVC=models")
    for component in ("operator", "api"):
        for key, value in env(container(docs, component)).items():
            if isinstance(value, str):
                monkeypatch.setenv(key, value)
    operator, api = OperatorSettings(), ApiSettings()
    assert operator.mount_paths() == api.mount_paths() == ["/shared", "/out", "/cache"]
    assert [v.claim_name for v in operator.shared_volumes] == ["ckpt", "out"]
    assert operator.shared_volumes[0].read_only and operator.shared_volumes[1].sub_path == "evals"


def test_one_policy_value_feeds_the_operator_and_the_api(monkeypatch: pytest.MonkeyPatch) -> None:
    from evalkube.api.settings import ApiSettings
    from evalkube.operator.settings import OperatorSettings

    docs = render(
        "--set-json", 'policy={"allowedImages":["registry.example/evals/*"],"maxGpus":4,"maxResources":{"memory":"64Gi"}}',
        "--set", "evaluator.allowOnline=true",
    )  # fmt: skip
    for component in ("operator", "api"):
        for key, value in env(container(docs, component)).items():
            if isinstance(value, str):
                monkeypatch.setenv(key, value)
    operator, api = OperatorSettings(), ApiSettings()
    assert operator.policy.model_dump() == api.admission_policy().model_dump()
    assert (operator.policy.max_gpus, operator.policy.allowed_images) == (4, ["registry.example/evals/*"])
    assert operator.policy.allow_online is True and operator.policy.max_resources == {"memory": "64Gi"}


def test_merge_rbac_lets_the_api_create_and_the_operator_run_checkpointmerges() -> None:
    docs = render()
    api_rules = [r for d in find(docs, "Role") if d["metadata"]["name"].endswith("-api") for r in d["rules"]]
    assert {"get", "list", "watch", "create"} <= granted_verbs(api_rules, "checkpointmerges")
    (operator_role,) = find(docs, "ClusterRole", f"{FULLNAME}-operator")
    assert {"get", "list", "watch"} <= granted_verbs(operator_role["rules"], "checkpointmerges")
    assert "patch" in granted_verbs(operator_role["rules"], "checkpointmerges/status")


def granted_verbs(rules: list[dict[str, Any]], resource_name: str) -> set[str]:
    return {verb for rule in rules if resource_name in rule.get("resources", []) for verb in rule["verbs"]}


def test_auth_none_drops_the_review_rights_and_a_network_policy_admits_only_its_peers() -> None:
    docs = render("--set", "api.auth=none")
    assert env(container(docs, "api"))["EVALKUBE_API_AUTH"] == "none"
    assert not [d for d in find(docs, "ClusterRole") if d["metadata"]["name"].endswith("-api-auth")]
    peers = '[{"namespaceSelector":{"matchLabels":{"team":"training"}}}]'
    (policy,) = find(
        render("--set", "api.networkPolicy.enabled=true", "--set-json", f"api.networkPolicy.from={peers}"),
        "NetworkPolicy",
    )
    assert policy["spec"]["ingress"] == [{"ports": [{"port": 8000, "protocol": "TCP"}], "from": json.loads(peers)}]
    assert policy["spec"]["podSelector"] == deployment(docs, "api")["spec"]["selector"]


def test_api_tenants_get_the_apis_role_in_each_namespace_or_cluster_wide_for_all() -> None:
    docs = render("--set", "api.namespaces={team-a,team-b}")
    assert env(container(docs, "api"))["EVALKUBE_API_NAMESPACES"] == "team-a,team-b"
    roles = {d["metadata"]["namespace"] for d in find(docs, "Role") if d["metadata"]["name"].endswith("-api")}
    assert roles == {NAMESPACE, "team-a", "team-b"}
    everywhere = render("--set", "api.namespaces={*}")
    assert {d["metadata"]["namespace"] for d in find(everywhere, "Role") if d["metadata"]["name"].endswith("-api")} == {
        NAMESPACE
    }
    (tenants,) = find(everywhere, "ClusterRole", f"{FULLNAME}-api-tenants")
    assert any(rule["resources"] == ["namespaces"] and rule["verbs"] == ["get"] for rule in tenants["rules"])


def test_api_namespace_may_differ_from_the_release_namespace() -> None:
    docs = render("-f", str(CHART / "ci" / "namespaced-values.yaml"))
    assert env(container(docs, "api"))["EVALKUBE_API_NAMESPACE"] == "team-a"
    assert find(docs, "Job")[0]["metadata"]["namespace"] == "team-a"
    assert deployment(docs, "api")["metadata"]["namespace"] == NAMESPACE


def test_watch_namespaces_must_include_the_api_namespace() -> None:
    result = helm(
        "helm4",
        "template",
        RELEASE,
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--set",
        "watchNamespaces={team-a}",
        check=False,
    )
    assert result.returncode != 0
    assert "must contain the API's namespace" in result.stderr


def test_single_operator_runs_standalone_and_is_never_doubled_by_a_rollout() -> None:
    docs = render()
    operator = deployment(docs, "operator")
    assert operator["spec"]["replicas"] == 1
    assert operator["spec"]["strategy"] == {"type": "Recreate"}
    assert container(docs, "operator")["args"] == ["--standalone", "--liveness=http://0.0.0.0:8080/healthz"]
    assert not find(docs, "ClusterKopfPeering") and not find(docs, "KopfPeering")


def test_operator_liveness_probe_targets_kopfs_liveness_endpoint() -> None:
    ctr = container(render("--set", "operator.livenessPort=9090"), "operator")
    assert "--liveness=http://0.0.0.0:9090/healthz" in ctr["args"]
    assert ctr["ports"] == [{"name": "health", "containerPort": 9090, "protocol": "TCP"}]
    assert ctr["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}


def test_replicas_enable_cluster_wide_peering() -> None:
    docs = render("-f", str(CHART / "ci" / "peering-values.yaml"))
    assert deployment(docs, "operator")["spec"]["replicas"] == 2
    assert deployment(docs, "operator")["spec"]["strategy"] == {"type": "RollingUpdate"}
    assert container(docs, "operator")["args"][0] == "--peering=evalkube-ci"
    assert "--verbose" in container(docs, "operator")["args"]
    assert [p["metadata"]["name"] for p in find(docs, "ClusterKopfPeering")] == ["evalkube-ci"]
    rules = rbac.rules_from_manifests(docs, service_account(docs, "operator"), NAMESPACE)
    assert rbac.allows(rules, "patch", "kopf.dev", "clusterkopfpeerings")


def test_replicas_enable_namespaced_peering_in_every_watched_namespace() -> None:
    docs = render("-f", str(CHART / "ci" / "namespaced-values.yaml"), "--set", "operator.replicas=3")
    assert {p["metadata"]["namespace"] for p in find(docs, "KopfPeering", "evalkube")} == {"team-a", "team-b"}
    assert not find(docs, "ClusterKopfPeering")
    rules = rbac.rules_from_manifests(docs, service_account(docs, "operator"), NAMESPACE)
    for ns in ("team-a", "team-b"):
        assert rbac.allows(rules, "patch", "kopf.dev", "kopfpeerings", namespace=ns)
    assert not rbac.allows(rules, "patch", "kopf.dev", "kopfpeerings", namespace=NAMESPACE)


def test_catalog_hook_job() -> None:
    (job,) = find(render(), "Job")
    assert job["metadata"]["annotations"] == {
        "helm.sh/hook": "post-install,post-upgrade",
        "helm.sh/hook-delete-policy": "before-hook-creation,hook-succeeded",
    }
    spec = job["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == f"{FULLNAME}-evaluator"
    assert spec["securityContext"]["runAsUser"] == DEFAULT_VALUES["evaluator"]["uid"]
    assert spec["restartPolicy"] == "Never"
    (ctr,) = spec["containers"]
    assert ctr["image"] == "ghcr.io/evalkube/evaluator:0.1.0"
    assert ctr["command"] + ctr["args"] == [
        "evalkube-runner",
        "catalog",
        "--configmap=evalkube-catalog",
        f"--namespace={NAMESPACE}",
    ]


def test_evaluator_uid_is_the_evaluator_images_user_and_the_operators() -> None:
    from evalkube.operator.jobspec import EVALUATOR_UID

    uid = DEFAULT_VALUES["evaluator"]["uid"]
    assert uid == EVALUATOR_UID
    dockerfile = (REPO / "evaluator-image" / "Dockerfile").read_text()
    assert re.findall(r"^USER (\S+)$", dockerfile, re.MULTILINE)[-1] == str(uid)


def test_ingress_and_service_monitor() -> None:
    docs = render("-f", str(CHART / "ci" / "ingress-monitoring-values.yaml"))
    (ingress,) = find(docs, "Ingress")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [{"secretName": "evalkube-tls", "hosts": ["evalkube.example.com"]}]
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "evalkube.example.com"
    assert rule["http"]["paths"][0]["backend"]["service"] == {"name": f"{FULLNAME}-api", "port": {"name": "http"}}
    (monitor,) = find(docs, "ServiceMonitor", f"{FULLNAME}-api")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "15s"}]
    (service,) = find(docs, "Service", f"{FULLNAME}-api")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()


def test_the_operators_metrics_are_scraped_and_a_dashboard_ships() -> None:
    """The operator's /metrics port (EVALKUBE_METRICS_PORT's default) behind a Service of its own,
    a ServiceMonitor on it, and the Grafana dashboard as valid JSON querying both components."""
    docs = render("-f", str(CHART / "ci" / "ingress-monitoring-values.yaml"))
    (monitor,) = find(docs, "ServiceMonitor", f"{FULLNAME}-operator")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "15s"}]
    (service,) = find(docs, "Service", f"{FULLNAME}-operator-metrics")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    pod_labels = deployment(docs, "operator")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    from evalkube.operator.settings import OperatorSettings

    assert service["spec"]["ports"][0]["targetPort"] == OperatorSettings.model_fields["metrics_port"].default
    (dashboard,) = find(docs, "ConfigMap", f"{FULLNAME}-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"  # what Grafana's sidecar selects
    queries = " ".join(
        t["expr"] for p in json.loads(dashboard["data"]["evalkube.json"])["panels"] for t in p["targets"]
    )
    for metric in ("evalkube_evaljobs", "evalkube_api_requests_total", "evalkube_operator_reconciles_total",
                   "evalkube_evaljob_queue_wait_seconds_bucket", "evalkube_evaljob_failures_total"):  # fmt: skip
        assert metric in queries
    assert not find(render(), "ServiceMonitor") and not find(render(), "ConfigMap", f"{FULLNAME}-dashboard")


def test_notes_tell_how_to_reach_the_api_and_submit() -> None:
    out = helm("helm4", "install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client").stdout
    notes = out[out.index("NOTES:") :]
    assert f"kubectl -n {NAMESPACE} port-forward svc/{FULLNAME}-api 8000:80" in notes
    assert "curl -s -X POST $EVALKUBE_URL/evaluate" in notes
    assert f"kubectl -n {NAMESPACE} get ej" in notes


# --- RBAC: least privilege --------------------------------------------------------------------

OPERATOR_NEEDS = [  # (verb, group, resource, subresource); tests/test_rbac_recorded.py: what it does
    *[(v, "evalkube.dev", "evaljobs", "") for v in ("get", "list", "watch", "delete")],
    ("patch", "evalkube.dev", "evaljobs", "status"),
    ("update", "evalkube.dev", "evaljobs", "finalizers"),
    *[(v, "evalkube.dev", "checkpointmerges", "") for v in ("get", "list", "watch")],
    ("patch", "evalkube.dev", "checkpointmerges", "status"),
    ("update", "evalkube.dev", "checkpointmerges", "finalizers"),
    *[(v, "batch", "jobs", "") for v in ("create", "list", "watch", "delete")],
    *[(v, "", "pods", "") for v in ("list", "watch")],
    ("get", "", "configmaps", ""),
    ("create", "", "events", ""),
]
API_NEEDS = [
    *[(v, "evalkube.dev", "evaljobs", "") for v in ("get", "list", "watch", "create", "patch")],
    *[(v, "evalkube.dev", "checkpointmerges", "") for v in ("get", "list", "watch", "create")],
    *[(v, "", "configmaps", "") for v in ("get", "list", "watch")],
    ("list", "", "pods", ""),  # GET /jobs/{id}/logs: the evaluator pod by its label,
    ("get", "", "pods", "log"),  # and its log
    ("create", "authentication.k8s.io", "tokenreviews", ""),  # who the caller is,
    ("create", "authorization.k8s.io", "subjectaccessreviews", ""),  # and what they may do
]
EVALUATOR_NEEDS = [(v, "", "configmaps", "") for v in ("create", "update", "patch")]


def granted(rules: list[dict[str, Any]]) -> set[tuple[str, str, str, str]]:
    """Every (verb, group, resource, subresource) the rules name (no wildcards allowed)."""
    out = set()
    for rule in rules:
        for verb in rule["verbs"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    assert "*" not in (verb, group, resource), rule
                    res, _, sub = resource.partition("/")
                    out.add((verb, group, res, sub))
    return out


def test_operator_rules_cluster_wide() -> None:
    docs = render()
    rules = rbac.rules_from_manifests(docs, service_account(docs, "operator"), NAMESPACE)
    assert {r["namespace"] for r in rules} == {None}
    assert granted(rules) == set(OPERATOR_NEEDS)
    assert rbac.allows(rules, "create", "batch", "jobs", namespace="anywhere")


def test_operator_rules_namespaced_grant_nothing_cluster_wide() -> None:
    docs = render("-f", str(CHART / "ci" / "namespaced-values.yaml"))
    # Nothing cluster-wide but the API's reviews of its callers (TokenReview/SAR are cluster-scoped).
    cluster_wide = [d["metadata"]["name"] for d in find(docs, "ClusterRole") + find(docs, "ClusterRoleBinding")]
    assert cluster_wide == [f"{FULLNAME}-api-auth"] * 2
    rules = rbac.rules_from_manifests(docs, service_account(docs, "operator"), NAMESPACE)
    assert {r["namespace"] for r in rules} == {"team-a", "team-b"}
    assert granted(rules) == set(OPERATOR_NEEDS)
    assert rbac.allows(rules, "create", "batch", "jobs", namespace="team-b")
    assert not rbac.allows(rules, "create", "batch", "jobs", namespace="elsewhere")


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_api_and_evaluator_rules(value_set: str) -> None:
    docs = render(*value_args(value_set))
    api_ns = env(container(docs, "api"))["EVALKUBE_API_NAMESPACE"]
    api = rbac.rules_from_manifests(docs, service_account(docs, "api"), NAMESPACE)
    assert {r["namespace"] for r in api} == {api_ns, None}  # None: the cluster-scoped reviews
    assert granted(api) == set(API_NEEDS)
    operator_env = env(container(docs, "operator"))
    evaluator_sa = operator_env["EVALKUBE_EVALUATOR_SERVICE_ACCOUNT"]
    for sa in find(docs, "ServiceAccount", evaluator_sa):
        ns = sa["metadata"]["namespace"]
        rules = rbac.rules_from_manifests(docs, evaluator_sa, ns)
        assert {r["namespace"] for r in rules} == {ns}
        assert granted(rules) == set(EVALUATOR_NEEDS)
    watched = set(filter(None, operator_env.get("EVALKUBE_NAMESPACES", "").split(",")))
    assert {api_ns} | watched <= {sa["metadata"]["namespace"] for sa in find(docs, "ServiceAccount", evaluator_sa)}


def test_nobody_may_read_secrets() -> None:
    docs = render("-f", str(CHART / "ci" / "peering-values.yaml"))
    for sa in find(docs, "ServiceAccount"):
        rules = rbac.rules_from_manifests(docs, sa["metadata"]["name"], sa["metadata"]["namespace"])
        assert not rbac.allows(rules, "get", "", "secrets", namespace=NAMESPACE)
