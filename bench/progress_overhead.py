"""What reading progress adds to the runner: ProcessGroupRunner with and without `on_progress`.

    .venv/bin/python bench/progress_overhead.py [--runs 5] [--items 200000] [--lmms-eval]

Each case alternates runs without progress reading and with it (the parser in the output pump,
the publisher thread at its default interval, a callback that does nothing), and prints the median
wall time of each and their ratio, and the median CPU time of the runner's own process (the pump
and publisher threads; the child not included), which a busy shared machine disturbs far less than
wall time. Output goes to /dev/null. The cases:

- `every redraw`: a child drawing a real tqdm bar over --items items with mininterval=0, so every
  item is a redraw (about 70 bytes each, 14 MB for 200k): far denser output than lmms-eval's.
- with --lmms-eval, `tiny lmms-eval`: the real tiny evaluation (tests/evaluator_fixtures.py), offline
  on CPU, with the runner's own command line; tqdm at its defaults, as lmms-eval draws its bars.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from evalkube.runner.invocation import build_argv, child_env, parse_spec  # noqa: E402
from evalkube.runner.process import ProcessGroupRunner  # noqa: E402
from evalkube.runner.progress import Progress  # noqa: E402

from evaluator_fixtures import make_tiny_model, make_tiny_task  # noqa: E402

BAR_CHILD = textwrap.dedent(
    """
    import sys
    from tqdm import tqdm
    for _ in tqdm(range(int(sys.argv[1])), desc="Model Responding", mininterval=0, miniters=1):
        pass
    """
)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed_run(
    argv: list[str], env: dict[str, str], on_progress: Callable[[Progress], None] | None
) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one run."""
    with open(os.devnull, "wb") as sink:
        runner = ProcessGroupRunner(output=sink, on_progress=on_progress)
        started, cpu = time.perf_counter(), cpu_seconds()
        outcome = runner.run(argv, env)
        elapsed, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    if outcome.returncode != 0:
        sys.exit(f"{argv[:3]} failed ({outcome.returncode}):\n{outcome.tail[-3000:]}")
    if on_progress is not None and outcome.progress is None:
        sys.exit(f"{argv[:3]}: no progress was read")
    return elapsed, cpu


def compare(name: str, argv: list[str], env: dict[str, str], runs: int) -> None:
    published: list[Progress] = []
    plain, reading = [], []
    for _ in range(runs):  # alternated, so drift in the machine's load hits both alike
        plain.append(timed_run(argv, env, None))
        reading.append(timed_run(argv, env, published.append))
    without, with_ = (statistics.median(wall for wall, _ in times) for times in (plain, reading))
    cpu_without, cpu_with = (statistics.median(cpu for _, cpu in times) for times in (plain, reading))
    print(
        f"{name:15s} wall: without {without:7.3f} s, with {with_:7.3f} s, ratio {with_ / without:.3f}   "
        f"runner CPU: without {cpu_without:6.3f} s, with {cpu_with:6.3f} s   "
        f"(medians of {runs}; {len(published) / runs:.1f} updates a run)",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--lmms-eval", action="store_true", help="also time the real tiny lmms-eval run")
    options = parser.parse_args()

    env = dict(os.environ)
    bar = [sys.executable, "-c", BAR_CHILD, str(options.items)]
    compare("every redraw", bar, env, options.runs)
    if options.lmms_eval:
        with tempfile.TemporaryDirectory(prefix="evalkube-bench-") as scratch:
            root = Path(scratch)
            task, _ = make_tiny_task(root / "tasks")
            spec = parse_spec({"model": "huggingface", "tasks": [task], "numGpus": 0,
                               "modelArgs": {"pretrained": str(make_tiny_model(root))}})  # fmt: skip
            argv = build_argv(spec, root / "output", root / "tasks")
            compare("tiny lmms-eval", argv, child_env({**env, "HF_HOME": str(root / "hf")}, False), options.runs)


if __name__ == "__main__":
    main()
