"""The runner's termination message: specific first, log tail after, never over 4096 bytes."""

from __future__ import annotations

from pathlib import Path

from evalkube.runner.failure import MAX_BYTES, clean_log, error_line, termination_message, write_termination_log

# What lmms-eval 0.7.3 prints for an unknown task (colours as it writes them to a pipe).
UNKNOWN_TASK_LOG = (
    "\x1b[32m2026-11-28 05:43:36\x1b[0m | \x1b[1mINFO    \x1b[0m | lmms_eval.__main__:cli_evaluate:516 - "
    "Verbosity set to INFO\n"
    "Traceback (most recent call last):\n"
    '  File "lmms_eval/__main__.py", line 583, in cli_evaluate\n'
    "ValueError: Tasks not found: nosuchtask. Try `lmms-eval --tasks {list_groups,list_subtasks,list_tags,list}`\n"
    "\x1b[32m2026-11-28 05:43:36\x1b[0m | \x1b[31m\x1b[1mERROR   \x1b[0m | lmms_eval.__main__:cli_evaluate:614 - "
    "\x1b[31m\x1b[1mError during evaluation: Tasks not found: nosuchtask. Try `lmms-eval --tasks list`.. "
    "Please set `--verbosity=DEBUG` to get more information.\x1b[0m\n"
)


def test_colours_and_progress_redraws_are_cleaned() -> None:
    assert clean_log("\x1b[1mbold\x1b[0m\r\nModel Responding:   0%|\rModel Responding: 100%|\n\n") == [
        "bold",
        "Model Responding: 100%|",
    ]


def test_lmms_evals_own_error_line_is_preferred() -> None:
    assert error_line(clean_log(UNKNOWN_TASK_LOG)) == "Tasks not found: nosuchtask. Try `lmms-eval --tasks list`."


def test_a_traceback_gives_its_exception() -> None:
    log = "Traceback (most recent call last):\n  File x\ntorch.OutOfMemoryError: CUDA out of memory.\n"
    assert error_line(clean_log(log)) == "torch.OutOfMemoryError: CUDA out of memory."
    assert error_line(["all fine"]) is None


def test_the_message_leads_with_the_summary_then_the_latest_lines() -> None:
    message = termination_message("lmms-eval produced no results: boom", "first\nsecond\nthird\n")
    assert message.splitlines() == [
        "lmms-eval produced no results: boom",
        "--- last lines of lmms-eval output ---",
        "first",
        "second",
        "third",
    ]


def test_a_long_log_is_cut_from_the_top_to_fit_4096_bytes() -> None:
    tail = "".join(f"line {i} é€\n" for i in range(5000))
    message = termination_message("summary", tail)
    assert len(message.encode()) <= MAX_BYTES
    assert message.startswith("summary\n") and message.endswith("line 4999 é€")
    assert "line 0 " not in message


def test_an_oversized_summary_is_truncated() -> None:
    message = termination_message("x" * 10_000, "tail")
    assert len(message.encode()) == MAX_BYTES and message.endswith("...")


def test_writing_is_best_effort(tmp_path: Path) -> None:
    write_termination_log(tmp_path / "absent" / "termination-log", "lost")  # no exception
    path = tmp_path / "termination-log"
    write_termination_log(path, "é" * MAX_BYTES)
    assert len(path.read_bytes()) <= MAX_BYTES
