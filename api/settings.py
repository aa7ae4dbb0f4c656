"""The API's configuration, read from the environment (the Helm chart sets these variables).

The variable names are a contract with the chart: EVALKUBE_API_HOST, EVALKUBE_API_PORT,
EVALKUBE_API_NAMESPACE, EVALKUBE_API_KUBECONFIG and EVALKUBE_CATALOG_CONFIGMAP (shared with the
component that writes the catalog, hence no API_ in it).
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from evalkube.policy import Policy
from evalkube.settings_types import CommaList, PolicySetting, SharedVolumes
from evalkube.volumes import mount_paths

#: EVALKUBE_API_NAMESPACES=*: every namespace of the cluster.
ALL_NAMESPACES = "*"


class ApiSettings(BaseSettings):
    """Where the API listens, which namespace its EvalJobs live in, and how it talks to Kubernetes."""

    model_config = SettingsConfigDict(env_prefix="EVALKUBE_API_", populate_by_name=True)

    host: str = Field(default="0.0.0.0", description="Address to listen on")
    port: int = Field(default=8000, ge=1, le=65535, description="Port to listen on")
    namespace: str = Field(default="default", min_length=1, description="Namespace of the EvalJobs")
    kubeconfig: str | None = Field(
        default=None, description="kubeconfig path; unset: in-cluster service account, else KUBECONFIG"
    )
    namespaces: CommaList = Field(
        default_factory=list,
        description="Further namespaces served besides `namespace` (comma-separated; `*`: every namespace "
        "of the cluster): a request names one with ?namespace=, else its ServiceAccount's namespace, else "
        "`namespace` is used",
    )
    catalog_configmap: str = Field(
        default="evalkube-catalog",
        validation_alias=AliasChoices("EVALKUBE_CATALOG_CONFIGMAP", "catalog_configmap"),
        description="ConfigMap (in `namespace`) holding catalog.json: the tasks and models the evaluator image runs",
    )
    kube_timeout_seconds: float = Field(
        default=10.0, gt=0, description="Timeout of each Kubernetes API call made while answering a request"
    )
    health_timeout_seconds: float = Field(
        default=2.0, gt=0, description="Timeout of /health's reachability check of the Kubernetes API"
    )
    watch_timeout_seconds: int = Field(
        default=300, ge=1, description="Server-side lifetime of one watch request; the cache then resumes it"
    )
    shared_volumes: SharedVolumes = Field(
        default_factory=list,
        validation_alias=AliasChoices("EVALKUBE_SHARED_VOLUMES", "shared_volumes"),
        description="The operator's shared volumes (the same JSON): absolute request paths must lie under one",
    )
    model_cache_pvc: str | None = Field(
        default=None,
        validation_alias=AliasChoices("EVALKUBE_MODEL_CACHE_PVC", "model_cache_pvc"),
        description="Set when evaluator pods mount the model cache at /cache (the operator's setting)",
    )
    artifacts_pvc: str | None = Field(
        default=None,
        validation_alias=AliasChoices("EVALKUBE_ARTIFACTS_PVC", "artifacts_pvc"),
        description="Set when evaluator pods mount the artifacts volume at /artifacts (the operator's setting)",
    )
    auth: Literal["kubernetes", "none"] = Field(
        default="kubernetes",
        description="kubernetes: every request is a TokenReview and a SubjectAccessReview of its caller; "
        "none (an explicit opt-in, logged): no authentication, the API's own rights apply",
    )
    auth_cache_seconds: float = Field(
        default=10.0, ge=0, description="How long a TokenReview or SubjectAccessReview answer is reused"
    )
    rate_limit_per_second: float = Field(
        default=20.0, ge=0, description="Requests per second each identity may make on average (0: no limit)"
    )
    rate_limit_burst: int = Field(default=100, ge=1, description="Requests an identity may make at once")
    merge_wait_seconds: float = Field(
        default=1800.0,
        ge=0,
        description="How long POST /merge waits for its CheckpointMerge, as lmms-eval's call is synchronous",
    )
    startup_sync_seconds: float = Field(
        default=10.0,
        ge=0,
        description="How long start-up waits for the first LIST of EvalJobs and the catalog before serving anyway",
    )
    max_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="Largest request body accepted (413 above it); an EvalJob must fit in one etcd object anyway",
    )
    fast_reads: bool = Field(
        default=True,
        description="Answer GET /jobs/{id} and GET /queue from memory before FastAPI's routing when every check "
        "is cached (the same answers; false routes every request through FastAPI)",
    )
    policy: PolicySetting = Field(
        default_factory=Policy,
        validation_alias=AliasChoices("EVALKUBE_POLICY", "policy"),
        description="The operator's policy (the same JSON): a request breaking it is refused with a 403",
    )
    evaluator_image: str | None = Field(
        default=None,
        validation_alias=AliasChoices("EVALKUBE_EVALUATOR_IMAGE", "evaluator_image"),
        description="The operator's evaluator image, which the policy always allows",
    )

    def served_namespaces(self) -> list[str]:
        """The namespaces the API serves from the start, its own first (`*` adds the others on first use)."""
        return list(dict.fromkeys([self.namespace, *(ns for ns in self.namespaces if ns != ALL_NAMESPACES)]))

    def serves_all(self) -> bool:
        return ALL_NAMESPACES in self.namespaces

    def admission_policy(self) -> Policy:
        """The policy as the operator applies it: its evaluator image is always allowed."""
        return self.policy.model_copy(update={"evaluator_image": self.evaluator_image})

    def mount_paths(self) -> list[str]:
        """Every path evaluator pods have user data under (the operator's view, from the same settings)."""
        return mount_paths(
            self.shared_volumes, model_cache=bool(self.model_cache_pvc), artifacts=bool(self.artifacts_pvc)
        )
