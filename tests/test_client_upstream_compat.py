"""lmms-eval's OWN clients, unchanged, against evalkube: a training loop switches by changing a URL."""

from __future__ import annotations

import httpx
import pytest
from lmms_eval.entrypoints.client import AsyncEvalClient as UpstreamAsyncEvalClient
from lmms_eval.entrypoints.client import EvalClient as UpstreamEvalClient

from harness.api_server import set_status, wait_until

pytestmark = pytest.mark.timeout(60)

METRICS = {"results": {"mme": {"exact_match,none": 0.5}}, "versions": {"mme": 1}}
#: lmms-eval's own `result`: where the results and samples files are (lmms-engine opens them).
RESULT = {"hf": {"results": "/ckpt/eval/hf/x_results.json", "samples": ["/ckpt/eval/hf/x_samples_mme.jsonl"]}}


@pytest.fixture
def upstream(api_url: str):
    with UpstreamEvalClient(api_url, timeout=30) as client:
        yield client


def test_submit_get_queue_and_cancel(upstream) -> None:
    assert upstream.is_healthy()

    first = upstream.evaluate(
        model="qwen2_5_vl", tasks=["mmmu_val", "mme"], model_args={"pretrained": "/ckpt/a"}, batch_size=1
    )
    second = upstream.evaluate(model="vllm", tasks=["mme"], limit=8, device="cuda:0")

    assert (first["status"], first["position_in_queue"]) == ("queued", 0)
    assert (second["status"], second["position_in_queue"]) == ("queued", 1)
    assert second["message"] == "Job queued successfully. Position in queue: 1"
    job = upstream.get_job(second["job_id"])
    assert (job["status"], job["position_in_queue"], job["request"]["limit"]) == ("queued", 1, 8)
    queue = upstream.get_queue_status()
    assert (queue["queue_size"], queue["queued_jobs"], queue["running_job"]) == (
        2,
        [first["job_id"], second["job_id"]],
        None,
    )

    assert "being cancelled" in upstream.cancel_job(first["job_id"])["message"]
    with pytest.raises(httpx.HTTPStatusError) as unknown:
        upstream.get_job("eval-nope")
    assert unknown.value.response.status_code == 404


def test_wait_for_job_returns_results_and_raises_on_failure(upstream, kube_client, namespace) -> None:
    done = upstream.evaluate(model="huggingface", tasks=["mme"])["job_id"]
    failed = upstream.evaluate(model="huggingface", tasks=["mme"])["job_id"]
    set_status(kube_client, namespace, done, phase="Completed", result=RESULT, metrics=METRICS)
    set_status(kube_client, namespace, failed, phase="Failed", error="no results file appeared")

    assert upstream.wait_for_job(done, poll_interval=0.05, timeout=30, verbose=False)["result"] == RESULT
    with pytest.raises(RuntimeError, match="Job failed: no results file appeared"):
        upstream.wait_for_job(failed, poll_interval=0.05, timeout=30, verbose=False)


def test_a_merge_no_one_runs_answers_in_time_and_an_unhealthy_answer_is_an_http_error(upstream) -> None:
    merged = upstream.merge_checkpoint("/ckpt/step-100")  # no operator: the API's bound (2 s here) passes
    assert merged["success"] is False and merged["merged_path"] is None
    assert merged["merge_id"].startswith("merge-") and merged["merge_id"] in merged["message"]
    with pytest.raises(httpx.HTTPStatusError) as tasks:
        upstream.list_tasks()  # no catalog in this namespace
    assert tasks.value.response.status_code == 503


async def test_the_upstream_async_client(api_url, kube_client, namespace) -> None:
    async with UpstreamAsyncEvalClient(api_url, timeout=30) as client:
        assert (await client.health())["status"] == "healthy"
        running = (await client.evaluate(model="huggingface", tasks=["mme"], num_fewshot=0))["job_id"]
        done = (await client.evaluate(model="huggingface", tasks=["mme"]))["job_id"]
        assert (await client.get_queue_status())["queued_jobs"] == [running, done]

        set_status(kube_client, namespace, running, phase="Running")
        wait_until(lambda: httpx.get(f"{api_url}/jobs/{running}").json()["status"] == "running", "the running phase")
        await client.cancel_job(running)  # lmms-eval's own server answers 400 here; evalkube cancels running jobs

        set_status(kube_client, namespace, done, phase="Completed", result=RESULT, metrics=METRICS)
        assert (await client.wait_for_job(done, poll_interval=0.05, verbose=False))["result"] == RESULT
