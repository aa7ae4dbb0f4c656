"""Wall time and peak memory of `evalkube-runner merge`, the figures a merge pod's resources come from.

    .venv/bin/python bench/merge_memory.py                       # the tests' tiny model (~100k parameters)
    .venv/bin/python bench/merge_memory.py --hidden 1024 --layers 16 --vocab 32000   # ~235M parameters

Makes a real 2-rank FSDP2 checkpoint on CPU (tests/checkpoint_fixtures.py: torch.save shards and a
DCP copy, fp32 as training saves them), then runs the real command under `/usr/bin/time -v` for
each format and checkpoint type and prints wall time and peak RSS. The baseline is the same
interpreter importing what a merge imports (torch, DTensor, transformers' model class), so
`(peak - baseline) / parameters` is what the merge itself costs per parameter, the number to
scale to a 7B model. Peak RSS is split into anonymous memory (the consolidated model) and
file-backed pages (the memory-mapped fp32 shards: page cache the kernel can reclaim, though a
cgroup counts it until it does).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from checkpoint_fixtures import make_checkpoints  # noqa: E402
from evaluator_fixtures import make_tiny_model  # noqa: E402

RUNNER = str(Path(sys.executable).with_name("evalkube-runner"))
BASELINE = "import torch.distributed.tensor, transformers, evalkube.runner.merge; transformers.Qwen2ForCausalLM"


def _rss(pid: int) -> tuple[int, int]:
    """(anonymous, file-backed) resident KiB of a process, 0s once it is gone."""
    try:
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    except (OSError, ValueError):
        return 0, 0
    return int(fields.get("RssAnon", "0 kB").split()[0]), int(fields.get("RssFile", "0 kB").split()[0])


def timed(argv: list[str]) -> tuple[float, float, float, float]:
    """(wall s, peak RSS MiB from GNU time, peak anonymous MiB, peak file-backed MiB) of one command;
    the split is sampled from /proc every 2 ms (file-backed pages are the memory-mapped shards)."""
    timer = subprocess.Popen(
        ["/usr/bin/time", "-v", *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    anon = file = 0
    while timer.poll() is None:
        for child in psutil.Process(timer.pid).children():
            a, f = _rss(child.pid)
            anon, file = max(anon, a), max(file, f)
        time.sleep(0.002)
    report = timer.stderr.read()
    if timer.returncode:
        raise RuntimeError(report[-2000:])
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", report)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", report)
    hours, minutes, seconds = (float(g) if g else 0.0 for g in wall.groups())
    return hours * 3600 + minutes * 60 + seconds, int(rss.group(1)) / 1024, anon / 1024, file / 1024


def sized_model(folder: Path, hidden: int, layers: int, vocab: int) -> Path:
    """A randomly initialised Qwen2 of the given size, saved fp32 with a copy of the tiny tokenizer."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tiny = make_tiny_model(folder / "tokenizer-source", steps=1)
    config = Qwen2Config(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=hidden * 11 // 4, num_hidden_layers=layers,
        num_attention_heads=max(hidden // 64, 1), num_key_value_heads=max(hidden // 256, 1), tie_word_embeddings=True,
    )  # fmt: skip
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)
    target = folder / "model"
    model.save_pretrained(target)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        (target / name).write_bytes((tiny / name).read_bytes())
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hidden", type=int, help="hidden size of a random Qwen2 (default: the tiny trained model)")
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--vocab", type=int, default=32000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        model = sized_model(folder, args.hidden, args.layers, args.vocab) if args.hidden else make_tiny_model(folder)
        made = make_checkpoints(model, folder / "checkpoints")
        fsdp2, dcp = made["fsdp2"], made["dcp"]
        from safetensors import safe_open

        with safe_open(str(model / "model.safetensors"), "pt") as weights:
            parameters = sum(_numel(weights, key) for key in weights.keys())  # noqa: SIM118
        _, baseline, base_anon, base_file = timed([sys.executable, "-c", BASELINE])
        print(f"parameters (stored, tied once): {parameters:,}; bf16 size {parameters * 2 / 2**20:.1f} MiB")
        print(f"baseline (imports only): peak RSS {baseline:.0f} MiB ({base_anon:.0f} anonymous, {base_file:.0f} file)")
        print("format  type     wall s  peak RSS MiB  above baseline: anonymous MiB  B/param  file-backed MiB  B/param")
        for fmt, checkpoint in (("fsdp2", fsdp2), ("dcp", dcp)):
            for kind in ("regular", "ema"):
                out = folder / f"merged-{fmt}-{kind}"
                argv = [RUNNER, "merge", "--checkpoint-path", str(checkpoint), "--output-path", str(out),
                        "--checkpoint-type", kind, "--termination-log", str(folder / "termination-log")]  # fmt: skip
                wall, rss, anon, file = timed(argv)
                anon, file = anon - base_anon, file - base_file
                per = 2**20 / parameters
                print(
                    f"{fmt:6}  {kind:7}  {wall:6.2f}  {rss:12.0f}  {anon:29.0f}  {anon * per:7.2f}  {file:15.0f}  {file * per:7.2f}"
                )


def _numel(weights: object, key: str) -> int:
    count = 1
    for size in weights.get_slice(key).get_shape():
        count *= size
    return count


if __name__ == "__main__":
    main()
