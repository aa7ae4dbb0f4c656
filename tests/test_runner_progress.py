"""lmms-eval's progress read from its child's raw output, and published without holding the child up.

The parser is fed real lmms-eval 0.7.3 output (tests/data, captured from a two-task run of the tiny
model), bars drawn by the real tqdm, and junk; the runner tests start real children that draw real
tqdm bars. The heavy test runs real lmms-eval on the tiny model through ProcessGroupRunner.
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import os
import random
import sys
import textwrap
import threading
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tqdm import tqdm

from evalkube.runner.invocation import build_argv, child_env, parse_spec
from evalkube.runner.process import ProcessGroupRunner
from evalkube.runner.progress import SEGMENT_LIMIT, Progress, ProgressParser, parse_bar

from evaluator_fixtures import TASK_NAME, make_tiny_task

CAPTURED = (Path(__file__).parent / "data" / "lmms_eval_0.7.3_two_tasks.log").read_bytes()
#: What the captured run showed, bar by bar: (stage, done, total).
CAPTURED_STATES = [
    ("Loading weights", 0, 26),
    ("Loading weights", 26, 26),
    ("Building contexts for evalkube_tinyqa_copy", 0, 5),
    ("Building contexts for evalkube_tinyqa_copy", 5, 5),
    ("Building contexts for evalkube_tinyqa", 0, 5),
    ("Building contexts for evalkube_tinyqa", 5, 5),
    ("Model Responding", 0, 10),
    ("Model Responding", 9, 10),
    ("Model Responding", 10, 10),
    ("Postprocessing", 0, 5),
    ("Postprocessing", 5, 5),
    ("Postprocessing", 0, 5),
    ("Postprocessing", 5, 5),
]


def states(data: bytes, chunk_sizes: list[int] | int) -> list[tuple[str, int, int]]:
    """Feed `data` in chunks of the given sizes (cycled) and list the states the parser reported."""
    parser = ProgressParser(clock=lambda: "2026-01-01T00:00:00Z")
    sizes = [chunk_sizes] if isinstance(chunk_sizes, int) else chunk_sizes
    seen, at, index = [], 0, 0
    while at < len(data):
        size = sizes[index % len(sizes)]
        progress = parser.feed(data[at : at + size])
        if progress is not None:
            seen.append((progress.stage, progress.done, progress.total))
        at, index = at + size, index + 1
    return seen


def is_subsequence(part: list, whole: list) -> bool:
    remaining = iter(whole)
    return all(item in remaining for item in part)


def tqdm_stream(**options: object) -> bytes:
    """What the real tqdm writes for a bar over 20 items with `options`, every redraw kept."""
    out = io.StringIO()
    for _ in tqdm(range(20), file=out, mininterval=0, miniters=1, **options):
        pass
    return out.getvalue().encode()


# The parser on real lmms-eval output


def test_every_bar_of_a_real_lmms_eval_run_is_read_in_order() -> None:
    assert states(CAPTURED, 1) == CAPTURED_STATES


@pytest.mark.parametrize("sizes", [len(CAPTURED), 65536, 4096, 100, 7, [1, 50, 3, 997, 2]])
def test_any_chunking_reads_a_subsequence_ending_at_the_last_bar(sizes: list[int] | int) -> None:
    """A chunk holding several redraws reports only its newest; never a state that was not drawn."""
    seen = states(CAPTURED, sizes)
    assert seen and is_subsequence(seen, CAPTURED_STATES)
    assert seen[-1] == ("Postprocessing", 5, 5)


def test_the_newest_state_has_percent_rate_eta_and_time() -> None:
    parser = ProgressParser(clock=lambda: "2026-12-01T22:00:13Z")
    end = CAPTURED.index(b"Model Responding: 100%")
    parser.feed(CAPTURED[:end])  # up to the redraw after "90%" and the log line appended to it
    assert parser.latest == Progress(
        percent=90.0, done=9, total=10, stage="Model Responding", rate=84.92, eta_seconds=0,
        updated_at="2026-12-01T22:00:13Z",
    )  # fmt: skip
    assert parser.latest.to_json() == {
        "percent": 90.0, "done": 9, "total": 10, "stage": "Model Responding", "rate": 84.92, "etaSeconds": 0,
        "updatedAt": "2026-12-01T22:00:13Z",
    }  # fmt: skip


def test_updated_at_is_rfc3339_utc_now() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    progress = ProgressParser().feed(b"\rModel Responding:  50%|#####     | 1/2 [00:01<00:01,  1.00it/s]")
    stamp = progress.updated_at
    assert stamp.endswith("Z") and len(stamp) == len("2026-01-01T00:00:00Z")
    assert before <= datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S%z") <= datetime.now(UTC)
    assert json.loads(json.dumps(progress.to_json())) == progress.to_json()


# The parser on bars drawn by the real tqdm


def test_a_described_bar_with_unknown_rate_at_first() -> None:
    stream = tqdm_stream(desc="Model Responding")
    assert states(stream, 1) == [("Model Responding", n, 20) for n in range(21)]
    first = ProgressParser().feed(stream[: stream.index(b"]") + 1])
    assert (first.percent, first.rate, first.eta_seconds) == (0.0, None, None)


@pytest.mark.parametrize(
    "options",
    [
        {"ascii": True},
        {"ncols": 0},  # no bar drawn at all
        {"ncols": 200},
        {"unit": " examples"},
        {"colour": "green"},  # ANSI codes inside the bar
        {"postfix": {"loss": 0.25, "note": "a,b]"}},
        {"desc": "Eval: with: colons"},
    ],
)
def test_bar_styles_of_the_real_tqdm(options: dict[str, object]) -> None:
    stage = str(options.get("desc", ""))
    assert states(tqdm_stream(**options), 3)[-1] == (stage, 20, 20)


@pytest.mark.parametrize(
    ("n", "total", "elapsed", "unit_scale", "done", "whole", "rate", "eta"),
    [
        (3, 10, 12.0, False, 3, 10, 0.25, 28),  # slower than 1/s: tqdm shows "4.00s/it"
        (1500, 200000, 1.0, True, 1500, 200000, 1500.0, 132),  # "1.50k/200k", "1.50kit/s"
        (150, 5000, 2.0, False, 150, 5000, 75.0, 64),
        (7, 7200, 1.0, False, 7, 7200, 7.0, 1027),  # "17:07" left
        (7, 72000, 1.0, False, 7, 72000, 7.0, 10284),  # "2:51:24" left
    ],
)
def test_counts_rates_and_eta_as_tqdm_formats_them(
    n: int, total: int, elapsed: float, unit_scale: bool, done: int, whole: int, rate: float, eta: int
) -> None:
    line = tqdm.format_meter(n, total, elapsed, prefix="Model Responding", unit_scale=unit_scale)
    bar = parse_bar(line)
    assert (bar.description, bar.done, bar.total, bar.eta_seconds) == ("Model Responding", done, whole, eta)
    assert bar.rate == pytest.approx(rate, rel=0.01)


def test_a_bar_without_a_total_is_not_progress() -> None:
    assert states(b"\rGenerating test split: 5 examples [00:00, 2476.56 examples/s]\n", 1) == []


# Stages


def test_undescribed_bars_take_the_task_from_lmms_eval_log_line() -> None:
    stream = (
        b"\x1b[1mBuilding contexts for mme on rank 0...\x1b[0m\n\r  0%|          | 0/4 [00:00<?, ?it/s]"
        b"\r100%|##########| 4/4 [00:00<00:00, 900.00it/s]\n"
        b"\rModel Responding:  50%|#####     | 2/4 [00:01<00:01,  2.00it/s]\n"
        b"\r 50%|#####     | 2/4 [00:01<00:01,  2.00it/s]\n"
    )
    expected = [("Building contexts for mme", 0, 4), ("Building contexts for mme", 4, 4),
                ("Model Responding", 2, 4), ("", 2, 4)]  # fmt: skip
    assert states(stream, 1) == expected
    assert states(stream, len(stream)) == [("", 2, 4)]


def test_a_redraw_that_changes_nothing_is_no_update() -> None:
    parser = ProgressParser()
    assert parser.feed(b"\rPostprocessing: 100%|##########| 5/5 [00:00<00:00, 806.78it/s]") is not None
    assert parser.feed(b"\rPostprocessing: 100%|##########| 5/5 [00:00<00:00, 790.00it/s]\n") is None


# Robustness


BAR_122 = b"\rModel Responding:  12%|#2        | 122/1000 [00:10<01:13, 12.00it/s]"
BAR_123 = b"\rModel Responding:  12%|#2        | 123/1000 [00:10<01:13, 12.10it/s]"


@pytest.mark.parametrize("split", range(1, len(BAR_123)))
def test_a_chunk_boundary_inside_a_bar_never_reads_a_wrong_number(split: int) -> None:
    parser = ProgressParser()
    parser.feed(BAR_122)
    seen = [parser.feed(BAR_123[:split]), parser.feed(BAR_123[split:])]
    assert [(p.done, p.total, p.rate) for p in seen if p] == [(123, 1000, 12.1)]


def test_a_10_mb_line_without_newline_costs_bounded_memory_and_time() -> None:
    chunk = b"x" * 65536
    parser = ProgressParser()
    parser.feed(b"\rModel Responding:  10%|#         | 1/10 [00:01<00:09,  1.00it/s]")
    tracemalloc.start()
    started = time.perf_counter()
    for _ in range(160):  # 10 MiB, no '\r' or '\n'
        assert parser.feed(chunk) is None
    progress = parser.feed(b"\n\rModel Responding:  20%|##        | 2/10 [00:02<00:08,  1.00it/s]")
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert (progress.stage, progress.done) == ("Model Responding", 2)
    assert peak < 4 * SEGMENT_LIMIT + 2 * len(chunk)  # the chunk in hand and a segment head, never the line
    assert elapsed < 1.0


def test_a_bar_at_the_head_of_a_long_segment_is_read() -> None:
    """lmms-eval appends a log line to a bar without '\\r' or '\\n' between (see the captured run)."""
    stream = b"\rModel Responding:  90%|######### | 9/10 [00:00<00:00, 84.92it/s]" + b"\x1b[32mlog" * 100000
    assert states(stream, 65536) == [("Model Responding", 9, 10)]


def test_junk_never_raises_and_does_not_hide_later_bars() -> None:
    rng = random.Random(9)
    fragments = [b"\x1b[", b"\x1b]0;title\x07", b"%", b"%|", b"|", b"/", b"[", b"<", b"]", b"?", b"\r", b"\n",
                 b"99%|| 1/0 [", b"100%|#| 5/5 [00:00<", b"\xff\xfe", b"k/s", b"1.5e3", b"\x00"]  # fmt: skip
    junk = b"".join(rng.choice(fragments) + rng.randbytes(rng.randrange(4)) for _ in range(50000))
    parser = ProgressParser()
    for at in range(0, len(junk), 997):
        parser.feed(junk[at : at + 997])
    last = parser.feed(b"\rPostprocessing:  40%|####      | 2/5 [00:00<00:00, 10.00it/s]")
    assert (last.stage, last.done, last.total) == ("Postprocessing", 2, 5)


def test_absurd_numbers_neither_raise_nor_give_infinities() -> None:
    nines = b"9" * 400  # a float of these is inf; the whole bar still fits a segment
    for stream in (
        b"\r 50%|#| " + nines + b"/" + nines + b" [00:00<00:00, 1.00it/s]\n",
        b"\r 50%|#| 1/2 [00:00<00:00, " + nines + b"it/s]\n",
        b"\r 50%|#| 1/2 [00:00<00:00, " + nines + b"." + nines + b"Ys/it]\n",
        b"\r 50%|#| 1/2 [" + nines + b":00<" + nines + b":00, 1.00it/s]\n",
    ):
        progress = ProgressParser().feed(stream)
        if progress is not None:
            json.dumps(progress.to_json(), allow_nan=False)


# Through ProcessGroupRunner, with real children drawing real tqdm bars

# Draws a bar over N items, one every DELAY seconds, to stderr, and keeps a copy of every byte it
# wrote in COPY, so the test can check the runner's forwarding byte for byte.
BAR_CHILD = textwrap.dedent(
    """
    import sys, time
    from tqdm import tqdm
    n, delay, copy = int(sys.argv[1]), float(sys.argv[2]), open(sys.argv[3], "w")
    class Tee:
        def write(self, text):
            copy.write(text)
            sys.stderr.write(text)
        def flush(self):
            copy.flush()
            sys.stderr.flush()
    for _ in tqdm(range(n), desc="Model Responding", file=Tee(), mininterval=0, miniters=1):
        time.sleep(delay)
    copy.close()
    """
)


class Calls:
    """A progress callback that records what it got and when."""

    def __init__(self, delay: float = 0.0, error: Exception | None = None) -> None:
        self.delay, self.error = delay, error
        self.got: list[tuple[float, Progress]] = []

    def __call__(self, progress: Progress) -> None:
        self.got.append((time.monotonic(), progress))
        time.sleep(self.delay)
        if self.error is not None:
            raise self.error


def run_bar_child(tmp_path: Path, n: int, delay: float, **runner_options: object) -> tuple[object, bytes, bytes]:
    output = io.BytesIO()
    copy = tmp_path / "written"
    runner = ProcessGroupRunner(output=output, **runner_options)
    outcome = runner.run([sys.executable, "-c", BAR_CHILD, str(n), str(delay), str(copy)], dict(os.environ))
    return outcome, output.getvalue(), copy.read_bytes()


def test_updates_come_at_most_once_per_interval_and_the_final_one_always(tmp_path: Path) -> None:
    calls = Calls()
    started = time.monotonic()
    outcome, forwarded, written = run_bar_child(tmp_path, 120, 0.01, on_progress=calls, progress_interval=0.3)
    elapsed = time.monotonic() - started
    assert outcome.returncode == 0 and forwarded == written
    times = [at for at, _ in calls.got]
    assert len(times) >= 3
    assert all(later - earlier >= 0.3 - 0.01 for earlier, later in itertools.pairwise(times[:-1]))
    assert len(times) <= elapsed / 0.3 + 2
    final = calls.got[-1][1]
    assert (final.stage, final.done, final.total, final.percent) == ("Model Responding", 120, 120, 100.0)
    assert outcome.progress == final


def test_the_final_update_does_not_wait_for_the_interval(tmp_path: Path) -> None:
    calls = Calls()
    started = time.monotonic()
    run_bar_child(tmp_path, 5, 0.05, on_progress=calls, progress_interval=60)
    assert time.monotonic() - started < 10
    [(_, first), (_, final)] = calls.got  # the first at once, then nothing for 60 s but the final
    assert first.done < 5 and (final.done, final.total) == (5, 5)


def test_a_bar_drawn_just_before_the_child_falls_quiet_is_read_without_waiting_for_more(tmp_path: Path) -> None:
    """Redraws close together are read together; the newest must not wait for the next redraw,
    which for a slow item may be minutes away."""
    script = textwrap.dedent(
        """
        import time
        from tqdm import tqdm
        bar = tqdm(total=3, desc="Model Responding", mininterval=0, miniters=1)
        bar.update(1); bar.update(1)
        time.sleep(1.5)
        bar.update(1); bar.close()
        """
    )
    calls = Calls()
    started = time.monotonic()
    ProcessGroupRunner(output=io.BytesIO(), on_progress=calls, progress_interval=0.2).run(
        [sys.executable, "-c", script], dict(os.environ)
    )
    ended = time.monotonic()
    assert [p.done for _, p in calls.got][-2:] == [2, 3]
    two_at = next(at for at, p in calls.got if p.done == 2)
    assert ended - two_at > 1.0 and two_at - started < 5


def test_a_raising_callback_is_logged_once_and_the_run_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    calls = Calls(error=RuntimeError("the API is down"))
    with caplog.at_level(logging.WARNING, logger="evalkube.runner"):
        outcome, forwarded, written = run_bar_child(tmp_path, 60, 0.01, on_progress=calls, progress_interval=0.1)
    assert outcome.returncode == 0 and forwarded == written
    assert len(calls.got) >= 3 and calls.got[-1][1].done == 60  # it kept being called, to the end
    [record] = caplog.records
    assert "publishing progress failed" in record.getMessage() and "the API is down" in record.exc_text


def test_a_callback_blocked_until_the_child_is_done_does_not_hold_the_child(tmp_path: Path) -> None:
    """The child writes far more than a pipe holds; if publishing ran on the pump, it would stall."""

    class Watched(io.BytesIO):
        def write(self, data: bytes) -> int:
            written = super().write(data)
            if self.getbuffer()[-12:] == b"ALL WRITTEN\n":  # the child's writes may come in pieces
                child_done.set()
            return written

    child_done = threading.Event()

    def blocked(progress: Progress) -> None:
        got.append(progress)
        child_done.wait(timeout=30)

    got: list[Progress] = []
    script = BAR_CHILD.replace("copy.close()", "copy.close(); print('ALL WRITTEN', flush=True)")
    output = Watched()
    started = time.monotonic()
    outcome = ProcessGroupRunner(output=output, on_progress=blocked, progress_interval=0.01).run(
        [sys.executable, "-c", script, "5000", "0", str(tmp_path / "written")], dict(os.environ)
    )
    assert outcome.returncode == 0 and time.monotonic() - started < 20
    assert output.getvalue().replace(b"ALL WRITTEN\n", b"") == (tmp_path / "written").read_bytes()
    assert len(output.getvalue()) > 4 * 65536  # four times what a pipe holds
    assert got[-1].done == 5000 and len(got) <= 3  # the first, perhaps one more, then the final


def test_a_10_mb_line_does_not_stall_the_runner(tmp_path: Path) -> None:
    bar = "\rModel Responding:  50%|#####     | 1/2 [00:01<00:01,  1.00it/s]\n"
    script = f"import sys; sys.stdout.write('x' * 10_000_000); sys.stdout.write({bar!r})"
    calls, output = Calls(), io.BytesIO()
    outcome = ProcessGroupRunner(output=output, on_progress=calls).run([sys.executable, "-c", script], dict(os.environ))
    assert outcome.returncode == 0 and output.getvalue() == b"x" * 10_000_000 + bar.encode()
    assert [(p.stage, p.done, p.total) for _, p in calls.got] == [("Model Responding", 1, 2)]


def test_no_callback_no_progress_and_no_bars_no_calls(tmp_path: Path) -> None:
    outcome, _, _ = run_bar_child(tmp_path, 3, 0)
    assert outcome.progress is None
    calls = Calls()
    outcome = ProcessGroupRunner(output=io.BytesIO(), on_progress=calls).run(
        [sys.executable, "-c", "print('no bars here, 100% sure')"], dict(os.environ)
    )
    assert outcome.returncode == 0 and outcome.progress is None and calls.got == []


# Real lmms-eval


@pytest.mark.heavy
def test_a_real_lmms_eval_run_reports_progress_to_100_percent(tmp_path: Path, tiny_model: Path, hf_home: Path) -> None:
    make_tiny_task(tmp_path / "tasks")
    spec = parse_spec({"model": "huggingface", "tasks": [TASK_NAME], "numGpus": 0,
                       "modelArgs": {"pretrained": str(tiny_model)}})  # fmt: skip
    argv = build_argv(spec, tmp_path / "output", tmp_path / "tasks")
    env = child_env({**os.environ, "HF_HOME": str(hf_home)}, allow_online=False)
    calls, output = Calls(), io.BytesIO()
    outcome = ProcessGroupRunner(output=output, on_progress=calls).run(argv, env)  # the default interval
    assert outcome.returncode == 0, output.getvalue()[-3000:]
    assert b"Model Responding: 100%" in output.getvalue()
    print("published:", *(json.dumps(progress.to_json()) for _, progress in calls.got), sep="\n")
    assert len(calls.got) >= 2
    final = calls.got[-1][1]
    assert (final.stage, final.done, final.total, final.percent) == ("Postprocessing", 5, 5, 100.0)
    assert outcome.progress == final
