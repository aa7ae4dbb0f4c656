"""The chaos soak: EvalJobs through REST and kubectl, cancels, a SIGKILLed operator, a restarted
API and injected apiserver faults, then a verdict on what must hold whatever happened.

Used by tests/test_chaos_soak.py (a modest N, in CI) and bench/chaos_soak.py (a larger N, figures).
Every component is real: the emulator (its own instance, so faults touch no other test), the
operator as a process, the API on uvicorn on a fixed port (so a restart keeps its URL), the
evalkube client. The tests play the kubelet, with the outcome each EvalJob was submitted with
(`modelArgs.soak_outcome`), so what each EvalJob must end as is known in advance.

Faults hit only the operator's and the API's requests (tokens "operator", "api"): the tests' own
kubelet, kubectl and bookkeeping stay exact, so a miscount is the system's, not the referee's.
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import kubernetes
import yaml
from kubernetes.client.exceptions import ApiException

from evalkube import EvalClient, EvalServerError, kube, resource
from evalkube.api.settings import ApiSettings

from harness.api_server import ApiServer
from harness.kubelet import FakeKubelet
from harness.operator_process import OperatorProcess
from kubeemu import FaultRule, KubeEmulator

CRDS = Path(__file__).resolve().parents[2] / "crds"
NAMESPACE = "soak"
#: outcome -> the phase it must end in.
EXPECTED = {"success": "Completed", "fail": "Failed", "oom": "Failed", "cancel": "Cancelled"}
WEIGHTS = {"success": 5, "fail": 2, "oom": 1, "cancel": 2}


def fault_rules() -> list[FaultRule]:
    """Every kind the emulator injects, on the operator's and the API's requests."""
    rules: list[FaultRule] = []
    for token in ("operator", "api"):
        rules += [
            FaultRule("error", token=token, code=500, rate=0.02),
            FaultRule("error", token=token, code=503, rate=0.02),
            FaultRule("throttle", token=token, rate=0.02, retry_after=1),
            FaultRule("timeout", verbs={"get", "list", "create", "patch"}, token=token, rate=0.01, delay=1.0),
            FaultRule("slow", token=token, rate=0.05, delay=0.2),
            FaultRule("watch_cut", token=token, rate=0.3, after_events=3, delay=2.0),
            FaultRule("watch_expired", token=token, rate=0.3),
            FaultRule("lost_response", verbs={"create"}, token=token, rate=0.15),
            FaultRule("lost_response", verbs={"patch"}, resource="evaljobs*", token=token, rate=0.05),
        ]
    rules.append(FaultRule("conflict", resource="evaljobs/status", token="operator", rate=0.1))
    return rules


def results_document(soak_id: str) -> dict[str, Any]:
    """What the scripted evaluator of submission `soak_id` reports (distinct per submission)."""
    score = int(soak_id) % 97 / 97
    return {"results": {"mme": {"exact_match,none": score, "alias": "mme"}}, "versions": {"mme": 1}, "n-shot": {}}


@dataclass
class SoakConfig:
    jobs: int = 30
    operator_kills: int = 10
    api_restarts: int = 3
    seconds: float = 20.0  # the window submissions, kills and restarts are spread over
    settle_seconds: float = 90.0  # after it: how long everything may take to finish
    seed: int = 11
    rest_share: float = 0.6


@dataclass
class Submission:
    soak_id: str
    outcome: str
    via: str  # "rest" | "kubectl"
    name: str | None = None  # the job_id, once acknowledged
    cancel_via: str = ""
    error: str = ""


@dataclass
class SoakReport:
    jobs: int = 0
    rest: int = 0
    kubectl: int = 0
    cancels: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    kills: int = 0
    restarts: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    unacknowledged: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    wrong_phase: list[str] = field(default_factory=list)
    corrupted: list[str] = field(default_factory=list)
    duplicate_jobs: list[str] = field(default_factory=list)
    job_create_requests: int = 0
    jobs_created: int = 0
    api_mismatches: list[str] = field(default_factory=list)
    harness_errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def problems(self) -> list[str]:
        named = {
            "unacknowledged": self.unacknowledged,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "stuck": self.stuck,
            "wrong phase": self.wrong_phase,
            "corrupted results": self.corrupted,
            "Jobs created more than once": self.duplicate_jobs,
            "API answers differing from the EvalJob": self.api_mismatches,
            "harness errors": self.harness_errors,
        }
        return [f"{what}: {items[:10]}" for what, items in named.items() if items]

    def lines(self) -> str:
        faults = ", ".join(f"{kind} {n}" for kind, n in sorted(self.faults.items()))
        return "\n".join(
            [
                f"jobs {self.jobs} (REST {self.rest}, kubectl {self.kubectl}; cancels {self.cancels}); "
                f"outcomes {dict(sorted(self.outcomes.items()))}",
                f"operator SIGKILLs {self.kills}, API restarts {self.restarts}, {self.seconds:.1f} s",
                f"faults injected: {faults} (total {sum(self.faults.values())})",
                f"Job creates sent by the operator {self.job_create_requests}, Jobs created {self.jobs_created}",
                f"lost {len(self.lost)}, duplicated {len(self.duplicated) + len(self.duplicate_jobs)}, "
                f"stuck {len(self.stuck)}, wrong phase {len(self.wrong_phase)}, corrupted {len(self.corrupted)}, "
                f"unacknowledged {len(self.unacknowledged)}",
            ]
        )


def _metrics(job_info: dict[str, Any]) -> Any:
    """The results document in a JobInfo: `metrics` where the API has that field, else `result`."""
    return job_info["metrics"] if "metrics" in job_info else job_info.get("result")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _JobLedger:
    """Every Job ever created, by name and uid, from a watch of the tests' own (no faults)."""

    def __init__(self, client: kubernetes.client.ApiClient) -> None:
        self.batch = kubernetes.client.BatchV1Api(client)
        self.uids: defaultdict[str, set[str]] = defaultdict(set)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="job-ledger")

    def start(self) -> _JobLedger:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        version = ""
        while not self._stop.is_set():
            try:
                for event in kubernetes.watch.Watch().stream(
                    self.batch.list_namespaced_job, NAMESPACE, resource_version=version, timeout_seconds=1
                ):
                    obj = event["raw_object"]
                    version = obj["metadata"]["resourceVersion"]
                    self.uids[obj["metadata"]["name"]].add(obj["metadata"]["uid"])
            except ApiException as error:
                version = "" if error.status == 410 else version
            except Exception:
                time.sleep(0.1)


class _Player:
    """Plays each evaluator pod's scripted outcome, as the kubelet would report it."""

    def __init__(self, emulator: KubeEmulator, kubelet: FakeKubelet, rng: random.Random, errors: list[str]) -> None:
        self.emulator, self.kubelet, self.rng, self.errors = emulator, kubelet, rng, errors
        self._seen: set[str] = set()
        self._pool = ThreadPoolExecutor(4, thread_name_prefix="player")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="player")

    def start(self) -> _Player:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for pod in self.emulator.list_objects("", "pods", NAMESPACE):
                name = pod["metadata"]["name"]
                if name not in self._seen:
                    self._seen.add(name)
                    env = {item["name"]: item.get("value") for item in pod["spec"]["containers"][0].get("env") or []}
                    spec = yaml.safe_load(env.get("EVALKUBE_SPEC") or "{}")
                    self._pool.submit(self._play, name, spec.get("modelArgs") or {}, self.rng.random())
            time.sleep(0.05)

    def _play(self, name: str, args: dict[str, str], draw: float) -> None:
        try:
            time.sleep(draw * 0.4)
            self.kubelet.start_container(name)
            outcome = args.get("soak_outcome")
            if outcome == "cancel":
                return  # runs until cancelled
            time.sleep(draw * 0.6)
            if outcome == "success":
                self.kubelet.finish(name, 0, results=results_document(args["soak_id"]))
            elif outcome == "fail":
                self.kubelet.finish(name, 1, message="soak: the scripted evaluation failed")
            elif outcome == "oom":
                self.kubelet.terminate_container(name, 137, reason="OOMKilled")
                self.kubelet.finish_job(name, False)
            else:
                self.errors.append(f"pod {name} has no scripted outcome: {args}")
        except ApiException as error:
            if error.status != 404:  # the pod went with a cancel
                self.errors.append(f"playing {name}: {error.status} {error.reason}")
        except Exception as error:
            self.errors.append(f"playing {name}: {error!r}")


class Soak:
    """One soak run in `workdir`; `run()` returns the report."""

    def __init__(self, config: SoakConfig, workdir: Path) -> None:
        self.config = config
        self.workdir = workdir
        self.rng = random.Random(config.seed)
        self.report = SoakReport()
        self.errors = self.report.harness_errors
        self._api_lock = threading.Lock()

    def run(self) -> SoakReport:
        started = time.monotonic()
        config = self.config
        emulator = KubeEmulator(port=_free_port(), history_size=200_000, fault_seed=config.seed).start()
        try:
            for crd in sorted(CRDS.glob("*.yaml")):
                emulator.apply_crd(yaml.safe_load(crd.read_text()))
            configs = {
                who: str(emulator.write_kubeconfig(self.workdir / who, token=who))
                for who in ("operator", "api", "test")
            }
            client = kube.api_client(configs["test"])
            kubernetes.client.CoreV1Api(client).create_namespace({"metadata": {"name": NAMESPACE}})
            self.custom = kubernetes.client.CustomObjectsApi(client)
            ledger = _JobLedger(client).start()
            kubelet = FakeKubelet(client, NAMESPACE, workdir=self.workdir / "kubelet").start()
            player = _Player(emulator, kubelet, random.Random(config.seed + 1), self.errors).start()
            self.operator = OperatorProcess(
                configs["operator"], [NAMESPACE], self.workdir / "operator.log",
                {"evaluator_image": "evalkube/evaluator:soak", "max_completed_jobs": "100000"},
            ).start()  # fmt: skip
            self.operator.wait_ready()
            self.api_port = _free_port()
            self.api_settings = ApiSettings(
                namespace=NAMESPACE, kubeconfig=configs["api"], kube_timeout_seconds=5, startup_sync_seconds=3
            )
            self.api = ApiServer(self.api_settings, port=self.api_port).start()
            self.url = self.api.url
            emulator.faults.add(*fault_rules())

            submissions = self._plan()
            chaos = threading.Thread(target=self._chaos, daemon=True, name="chaos")
            chaos.start()
            with ThreadPoolExecutor(3, thread_name_prefix="submitter") as pool:
                for index, submission in enumerate(submissions):
                    pool.submit(self._submit, submission)
                    time.sleep(max(0.0, started + config.seconds * (index + 1) / len(submissions) - time.monotonic()))
            chaos.join()
            self._settle(emulator, submissions, started + config.seconds + config.settle_seconds)
            self.report.faults = emulator.faults.counts()
            emulator.faults.clear()
            self._judge(emulator, submissions, ledger)
            player.stop()
            kubelet.stop()
            ledger.stop()
            self.api.stop()
            self.operator.stop()
            client.close()
        finally:
            emulator.stop()
        self.report.seconds = time.monotonic() - started
        return self.report

    def _plan(self) -> list[Submission]:
        outcomes = list(WEIGHTS)
        plan = []
        for index in range(self.config.jobs):
            outcome = self.rng.choices(outcomes, [WEIGHTS[o] for o in outcomes])[0]
            via = "rest" if self.rng.random() < self.config.rest_share else "kubectl"
            cancel_via = self.rng.choice(("rest", "kubectl")) if outcome == "cancel" else ""
            plan.append(Submission(str(index), outcome, via, cancel_via=cancel_via))
        report = self.report
        report.jobs, report.outcomes = len(plan), Counter(s.outcome for s in plan)
        report.rest = sum(s.via == "rest" for s in plan)
        report.kubectl, report.cancels = report.jobs - report.rest, report.outcomes["cancel"]
        return plan

    def _submit(self, submission: Submission) -> None:
        args = {"soak_id": submission.soak_id, "soak_outcome": submission.outcome}
        try:
            if submission.via == "rest":
                with EvalClient(self.url, timeout=10) as client:
                    submission.name = client.evaluate(model="huggingface", tasks=["mme"], model_args=args)["job_id"]
            else:
                spec = {"model": "huggingface", "tasks": ["mme"], "modelArgs": args}
                body = {"apiVersion": resource.API_VERSION, "kind": resource.KIND, "metadata": {"generateName": "kctl-"}, "spec": spec}  # fmt: skip
                created = self.custom.create_namespaced_custom_object(
                    resource.GROUP, resource.VERSION, NAMESPACE, resource.PLURAL, body
                )
                submission.name = created["metadata"]["name"]
        except Exception as error:  # not acknowledged: the client knows it failed
            submission.error = repr(error)
            self.report.unacknowledged.append(f"{submission.soak_id}: {error!r}"[:300])
            return
        if submission.outcome == "cancel":
            time.sleep(self.rng.random())
            self._cancel(submission)

    def _cancel(self, submission: Submission) -> None:
        assert submission.name
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if submission.cancel_via == "kubectl":
                    self.custom.patch_namespaced_custom_object(
                        resource.GROUP, resource.VERSION, NAMESPACE, resource.PLURAL, submission.name,
                        {"spec": {"cancelRequested": True}},
                    )  # fmt: skip
                else:
                    with EvalClient(self.url, timeout=10) as client:
                        client.cancel_job(submission.name)
                return
            except (httpx.TransportError, EvalServerError) as error:
                if isinstance(error, EvalServerError) and "already cancelled" in str(error.detail):
                    return  # an earlier try went through, its answer did not (a 503 after the write)
                if isinstance(error, EvalServerError) and error.response.status_code < 500:
                    self.errors.append(f"cancelling {submission.name}: {error}")
                    return
                time.sleep(0.3)  # the API is restarting
        self.errors.append(f"cancelling {submission.name}: no API answered for 60 s")

    def _chaos(self) -> None:
        config = self.config
        start = time.monotonic()
        events = [(self.rng.uniform(0.05, 0.95) * config.seconds, "kill") for _ in range(config.operator_kills)]
        events += [((i + 0.5) / config.api_restarts * config.seconds, "restart") for i in range(config.api_restarts)]
        for at, what in sorted(events):
            time.sleep(max(0.0, start + at - time.monotonic()))
            if what == "kill":
                self.operator.stop(kill=True)
                self.report.kills += 1
                time.sleep(self.rng.uniform(0.0, 0.5))
                self.operator.start()
            else:
                self.api.stop()
                self.report.restarts += 1
                self.api = ApiServer(self.api_settings, port=self.api_port).start()

    def _settle(self, emulator: KubeEmulator, submissions: list[Submission], deadline: float) -> None:
        def unfinished() -> list[str]:
            phases = {
                ej["metadata"]["name"]: (ej.get("status") or {}).get("phase")
                for ej in emulator.list_objects(resource.GROUP, resource.PLURAL, NAMESPACE)
            }
            return [s.name for s in submissions if s.name and phases.get(s.name) not in resource.Phase.FINISHED]

        while unfinished() and time.monotonic() < deadline:
            time.sleep(0.2)

    def _judge(self, emulator: KubeEmulator, submissions: list[Submission], ledger: _JobLedger) -> None:
        report = self.report
        evaljobs = {
            ej["metadata"]["name"]: ej for ej in emulator.list_objects(resource.GROUP, resource.PLURAL, NAMESPACE)
        }
        by_id: defaultdict[str, list[str]] = defaultdict(list)
        for name, ej in evaljobs.items():
            by_id[str(((ej.get("spec") or {}).get("modelArgs") or {}).get("soak_id"))].append(name)
        report.duplicated = [f"{soak_id}: {names}" for soak_id, names in by_id.items() if len(names) > 1]
        for submission in submissions:
            if submission.name is None:
                continue
            ej = evaljobs.get(submission.name)
            if ej is None:
                report.lost.append(submission.name)
                continue
            status = ej.get("status") or {}
            phase = status.get("phase")
            if phase not in resource.Phase.FINISHED:
                report.stuck.append(f"{submission.name} ({submission.outcome}): {phase} {status.get('message')}")
            elif phase != EXPECTED[submission.outcome]:
                report.wrong_phase.append(f"{submission.name} {submission.outcome} -> {phase}: {status.get('error')}")
            elif submission.outcome == "oom" and "OOMKilled" not in (status.get("error") or ""):
                report.wrong_phase.append(f"{submission.name} oom without OOMKilled: {status.get('error')}")
            elif phase == "Completed":
                config_map = emulator.get_object(
                    "", "configmaps", resource.result_configmap_name(submission.name), NAMESPACE
                )
                stored = json.loads(((config_map or {}).get("data") or {}).get(resource.RESULTS_KEY) or "null")
                if stored != results_document(submission.soak_id):
                    report.corrupted.append(f"{submission.name}: ConfigMap holds {stored}")
            uids = ledger.uids.get(submission.name, set())
            if len(uids) > 1 or (not uids and submission.outcome != "cancel"):
                report.duplicate_jobs.append(f"{submission.name}: {len(uids)} Jobs")
        report.jobs_created = sum(len(uids) for uids in ledger.uids.values())
        report.job_create_requests = sum(
            1 for r in emulator.requests if (r.verb, r.resource, r.token) == ("create", "jobs", "operator")
        )
        with httpx.Client(base_url=self.url, timeout=10) as http:  # what a REST client now reads
            for submission in submissions:
                if submission.name is None or submission.name in report.lost:
                    continue
                answer = http.get(f"/jobs/{submission.name}")
                expected = EXPECTED[submission.outcome].lower()
                if answer.status_code != 200 or answer.json()["status"] != expected:
                    report.api_mismatches.append(f"{submission.name}: {answer.status_code} {answer.text[:200]}")
                elif expected == "completed" and _metrics(answer.json()) != results_document(submission.soak_id):
                    report.corrupted.append(f"{submission.name}: GET /jobs answers {_metrics(answer.json())}")
