"""Operator settings, read from EVALKUBE_* environment variables (the Helm chart sets them).

Everything that shapes the evaluator pods lives here, so a cluster admin configures GPUs, images,
volumes and limits in one place, and each EvalJob only says what it evaluates.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from evalkube.policy import Policy
from evalkube.settings_types import CommaList, PolicySetting, SharedVolumes
from evalkube.volumes import mount_paths


class OperatorSettings(BaseSettings):
    """How the operator builds evaluator Jobs and which EvalJobs it serves."""

    model_config = SettingsConfigDict(env_prefix="EVALKUBE_", extra="ignore")

    #: Namespaces to watch; empty = the whole cluster.
    namespaces: CommaList = Field(default_factory=list)
    evaluator_image: str = "ghcr.io/evalkube/evaluator:0.1.0"
    image_pull_policy: str = "IfNotPresent"
    image_pull_secrets: CommaList = Field(default_factory=list)
    #: Extended resource that numGpus requests (e.g. amd.com/gpu).
    gpu_resource_name: str = "nvidia.com/gpu"
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    #: Finished EvalJobs kept per namespace; older ones are deleted with their children.
    max_completed_jobs: int = Field(default=200, ge=0)
    #: Claims every evaluator and merge pod mounts at the path training pods use too (JSON list of
    #: {claimName, mountPath, readOnly, subPath}); absolute paths in EvalJobs must lie under one.
    shared_volumes: SharedVolumes = Field(default_factory=list)
    #: Memory (request and limit) of a checkpoint merge's pod: the whole model in bf16 plus the
    #: largest tensor and ~1 GiB of imports (a 7B model needs about 17Gi).
    merge_memory: str = "16Gi"
    #: PersistentVolumeClaim mounted at /artifacts for per-sample logs.
    artifacts_pvc: str | None = None
    #: PersistentVolumeClaim mounted at /cache (HF_HOME) so models are downloaded once.
    model_cache_pvc: str | None = None
    #: Whether EvalJobs may opt in to hub downloads; offline otherwise. The policy's allowOnline says
    #: it now (EVALKUBE_ALLOW_ONLINE=true still turns it on); this field always equals it.
    allow_online: bool = False
    #: What an EvalJob may ask for (EVALKUBE_POLICY, a JSON object: see evalkube.policy); breaking
    #: EvalJobs fail at admission, with no Job.
    policy: PolicySetting = Field(default_factory=Policy)
    evaluator_service_account: str | None = None
    #: With a Kueue LocalQueue name, Jobs are created suspended and Kueue admits them.
    kueue_queue_name: str | None = None
    shm_size: str = "8Gi"
    default_resources: dict[str, dict[str, int | str]] = Field(default_factory=dict)
    #: Connections to the apiserver for the operator's own calls: how many can be in flight at once.
    kube_connections: int = Field(default=32, ge=1, le=256)
    #: At most this many EvalJobs with a Job at once per namespace (0 = no limit): the rest wait in order.
    max_running: int = Field(default=0, ge=0)
    #: With peering (several replicas): seconds after which a silent replica counts as dead and a
    #: standby takes over.
    peering_lifetime_seconds: int = Field(default=60, ge=1)
    #: Every this many seconds, the EvalJobs whose last reconcile failed (the apiserver hiccuped)
    #: are reconciled again. 2 s: a retry comes promptly, yet an apiserver that is down sees at
    #: most one attempt per failed EvalJob per period.
    resync_seconds: float = Field(default=2.0, gt=0)
    #: Every this many seconds, each running EvalJob's progress ConfigMap is read into status.progress.
    progress_poll_seconds: float = Field(default=5.0, gt=0)
    #: Fail a running EvalJob that made no progress (lmms-eval's bars did not move) for this many
    #: seconds, counted from its last progress or else from its start; unset: never.
    hung_after_seconds: int | None = Field(default=None, ge=1)
    #: Port of the operator's Prometheus /metrics (0: not served).
    metrics_port: int = Field(default=9090, ge=0, le=65535)

    @model_validator(mode="after")
    def _one_allow_online(self) -> OperatorSettings:
        online = self.allow_online or self.policy.allow_online
        self.policy = self.policy.model_copy(update={"allow_online": online, "evaluator_image": self.evaluator_image})
        self.allow_online = online
        return self

    def mount_paths(self) -> list[str]:
        """Every path an evaluator pod has user data under (what absolute request paths may name)."""
        return mount_paths(
            self.shared_volumes, model_cache=bool(self.model_cache_pvc), artifacts=bool(self.artifacts_pvc)
        )
