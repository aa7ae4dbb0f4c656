"""evalkube's EvalClient and AsyncEvalClient against the real API (the tests play the operator)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator

import httpx
import kubernetes
import pytest

from evalkube import AsyncEvalClient, EvalClient, EvalServerError, JobCancelledError, JobFailedError, resource

from harness.api_server import set_status, wait_until

pytestmark = pytest.mark.timeout(60)

RESULT = {"results": {"mme": {"exact_match,none": 0.5}}, "versions": {"mme": 1}, "n-shot": {"mme": 0}}


def spec_of(kube_client: kubernetes.client.ApiClient, namespace: str, name: str) -> dict:
    return kubernetes.client.CustomObjectsApi(kube_client).get_namespaced_custom_object(
        resource.GROUP, resource.VERSION, namespace, resource.PLURAL, name
    )["spec"]


@pytest.fixture
def operator(eval_client: EvalClient, kube_client, namespace) -> Iterator:
    """Play the operator in a thread: walk a job through phases, each once the API shows the last."""
    threads: list[threading.Thread] = []

    def run(job_id: str, *steps: dict) -> None:
        def walk() -> None:
            for status in steps:
                set_status(kube_client, namespace, job_id, **status)
                wanted = status["phase"].lower()
                wait_until(lambda: eval_client.get_job(job_id)["status"] == wanted, f"phase {wanted}")

        thread = threading.Thread(target=walk, daemon=True)
        thread.start()
        threads.append(thread)

    yield run
    for thread in threads:
        thread.join(30)


def test_evaluate_sends_lmms_evals_fields_and_evalkubes_extras(eval_client, kube_client, namespace) -> None:
    kubernetes.client.CoreV1Api(kube_client).create_namespaced_config_map(
        namespace, {"metadata": {"name": "my-tasks"}, "data": {"t.yaml": "task: mme_lite"}}
    )

    job = eval_client.evaluate(
        "qwen2_5_vl",
        ["mme_lite"],
        model_args={"pretrained": "/ckpt/step-100"},
        num_fewshot=2,
        gen_kwargs="temperature=0,max_new_tokens=16",
        log_samples=False,
        num_gpus=4,
        priority=9,
        timeout_seconds=3600,
        node_selector={"gpu": "h100"},
        tolerations=[{"key": "gpu", "operator": "Exists"}],
        custom_tasks="my-tasks",
        allow_online=True,
    )

    assert (job["status"], job["position_in_queue"]) == ("queued", 0)
    spec = spec_of(kube_client, namespace, job["job_id"])
    assert spec == {
        "model": "qwen2_5_vl",
        "tasks": ["mme_lite"],
        "modelArgs": {"pretrained": "/ckpt/step-100"},
        "numFewshot": 2,
        "genKwargs": "temperature=0,max_new_tokens=16",
        "logSamples": False,
        "predictOnly": False,
        "numGpus": 4,
        "priority": 9,
        "timeoutSeconds": 3600,
        "nodeSelector": {"gpu": "h100"},
        "tolerations": [{"key": "gpu", "operator": "Exists"}],
        "customTasks": {"configMap": "my-tasks"},
        "allowOnline": True,
    }
    assert eval_client.get_job(job["job_id"])["request"]["custom_tasks"] == {"config_map": "my-tasks"}


def test_wait_for_job_returns_the_completed_job(eval_client, operator, capsys) -> None:
    job_id = eval_client.evaluate("huggingface", ["mme"])["job_id"]
    operator(job_id, {"phase": "Running"}, {"phase": "Completed", "metrics": RESULT})

    job = eval_client.wait_for_job(job_id, poll_interval=0.05)

    assert (job["status"], job["metrics"]) == ("completed", RESULT)
    assert capsys.readouterr().out.endswith(f"Job {job_id} completed\n")


def test_wait_for_job_raises_the_servers_error_when_the_job_failed(eval_client, operator) -> None:
    job_id = eval_client.evaluate("huggingface", ["mme"])["job_id"]
    operator(job_id, {"phase": "Running"}, {"phase": "Failed", "error": "CUDA out of memory"})

    with pytest.raises(JobFailedError, match="^Job failed: CUDA out of memory$") as failed:
        eval_client.wait_for_job(job_id, poll_interval=0.05, verbose=False)

    assert isinstance(failed.value, RuntimeError)  # what lmms-eval's client raises
    assert failed.value.job["job_id"] == job_id


def test_wait_for_job_ends_when_the_job_is_cancelled(eval_client, operator) -> None:
    job_id = eval_client.evaluate("huggingface", ["mme"])["job_id"]
    assert "being cancelled" in eval_client.cancel_job(job_id)["message"]
    operator(job_id, {"phase": "Cancelled"})

    with pytest.raises(JobCancelledError, match=f"^Job {job_id} was cancelled$"):
        eval_client.wait_for_job(job_id, poll_interval=0.05, verbose=False)


def test_wait_for_job_gives_up_after_its_timeout(eval_client) -> None:
    job_id = eval_client.evaluate("huggingface", ["mme"])["job_id"]

    with pytest.raises(TimeoutError, match=f"Timeout waiting for job {job_id}"):
        eval_client.wait_for_job(job_id, poll_interval=0.01, timeout=0.05, verbose=False)


def test_errors_carry_the_servers_detail(eval_client, kube_client, namespace) -> None:
    with pytest.raises(EvalServerError) as unknown:
        eval_client.get_job("eval-nope")
    assert isinstance(unknown.value, httpx.HTTPStatusError)  # lmms-eval-style handlers still catch it
    assert unknown.value.response.status_code == 404
    assert unknown.value.detail == "Job eval-nope not found"
    assert str(unknown.value).endswith("/jobs/eval-nope: Job eval-nope not found")

    with pytest.raises(
        EvalServerError, match=r"422 Unprocessable Entity .*: Value error, tasks\[0\]: must not contain ','"
    ):
        eval_client.evaluate("huggingface", ["mme,mmmu_val"])

    job_id = eval_client.evaluate("huggingface", ["mme"])["job_id"]
    set_status(kube_client, namespace, job_id, phase="Completed")
    wait_until(lambda: eval_client.get_job(job_id)["status"] == "completed", "the completed phase")
    with pytest.raises(EvalServerError, match=f"400 Bad Request .*: Job {job_id} already completed; nothing to cancel"):
        eval_client.cancel_job(job_id)

    with pytest.raises(EvalServerError, match="422 Unprocessable Entity .*checkpoint_path.*lies under no volume"):
        eval_client.merge_checkpoint("/elsewhere/step-100")


def test_tasks_and_models_come_from_the_catalog(eval_client, http, kube_client, namespace) -> None:
    with pytest.raises(EvalServerError, match="503 Service Unavailable .*catalog is not available"):
        eval_client.list_tasks()

    catalog = {"tasks": ["mme", "gsm8k"], "models": ["vllm"]}
    kubernetes.client.CoreV1Api(kube_client).create_namespaced_config_map(
        namespace, {"metadata": {"name": "evalkube-catalog"}, "data": {resource.CATALOG_KEY: json.dumps(catalog)}}
    )
    wait_until(lambda: http.get("/tasks").status_code == 200, "the catalog")
    assert eval_client.list_tasks() == ["mme", "gsm8k"]
    assert eval_client.list_models() == ["vllm"]


def test_health_and_queue(eval_client) -> None:
    job_id = eval_client.evaluate("huggingface", ["mme"])["job_id"]

    assert eval_client.is_healthy()
    assert eval_client.health()["queue_size"] == 1
    assert eval_client.get_queue_status()["queued_jobs"] == [job_id]


def test_is_healthy_is_false_when_nothing_answers() -> None:
    with EvalClient("http://127.0.0.1:9", timeout=5) as client:
        assert client.is_healthy() is False


async def test_fifty_concurrent_submissions_all_land_with_distinct_ids(
    async_eval_client, kube_client, namespace
) -> None:
    jobs = await asyncio.gather(
        *(
            async_eval_client.evaluate("huggingface", ["mme"], model_args={"pretrained": f"/ckpt/{i}"})
            for i in range(50)
        )
    )

    job_ids = {job["job_id"] for job in jobs}
    assert len(job_ids) == 50
    listing = kubernetes.client.CustomObjectsApi(kube_client).list_namespaced_custom_object(
        resource.GROUP, resource.VERSION, namespace, resource.PLURAL
    )
    assert {item["metadata"]["name"] for item in listing["items"]} == job_ids
    queue = await async_eval_client.get_queue_status()
    assert (queue["queue_size"], set(queue["queued_jobs"])) == (50, job_ids)
    infos = await asyncio.gather(*(async_eval_client.get_job(job_id) for job_id in job_ids))
    assert sorted(info["position_in_queue"] for info in infos) == list(range(50))


async def test_the_async_client_waits_and_raises_like_the_sync_one(async_eval_client, operator) -> None:
    done = (await async_eval_client.evaluate("huggingface", ["mme"]))["job_id"]
    cancelled = (await async_eval_client.evaluate("huggingface", ["mme"]))["job_id"]
    operator(done, {"phase": "Running"}, {"phase": "Completed", "metrics": RESULT})
    await async_eval_client.cancel_job(cancelled)
    operator(cancelled, {"phase": "Cancelled"})

    assert (await async_eval_client.wait_for_job(done, poll_interval=0.05, verbose=False))["metrics"] == RESULT
    with pytest.raises(JobCancelledError):
        await async_eval_client.wait_for_job(cancelled, poll_interval=0.05, verbose=False)
    with pytest.raises(EvalServerError, match="404 Not Found .*: Job eval-nope not found"):
        await async_eval_client.get_job("eval-nope")
    with pytest.raises(EvalServerError, match="503 Service Unavailable .*catalog is not available"):
        await async_eval_client.list_models()
    assert await async_eval_client.is_healthy()


async def test_the_async_client_closes_by_either_name(api_url) -> None:
    for close in ("aclose", "close"):
        client = AsyncEvalClient(api_url)
        await getattr(client, close)()
        assert client.client.is_closed
