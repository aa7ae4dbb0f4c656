"""The termination message: why an evaluation failed, in at most 4096 bytes.

Kubernetes copies the container's termination-log file (at most 4096 bytes) into the pod's
status, where the operator reads it into EvalJob status.error. The first line says what went
wrong as specifically as the runner can tell; the rest is the tail of lmms-eval's output, cleaned
of terminal colours and progress-bar redraws, so the user rarely needs `kubectl logs`.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

#: Kubernetes' limit on a termination message.
MAX_BYTES = 4096
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
#: lmms-eval's CLI logs every failure this way before exiting 0.
_LMMS_EVAL_ERROR = re.compile(r"Error during evaluation: (.*?)(?:\. Please set `--verbosity=DEBUG`.*)?$")
#: The last line of a Python traceback.
_EXCEPTION = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception)): (.+)$")


def clean_log(text: str) -> list[str]:
    """Lines of terminal output as a person would read them: no colour codes, and of a line
    redrawn with carriage returns (a progress bar) only its final state."""
    lines = []
    for line in _ANSI.sub("", text).split("\n"):
        line = line.rstrip("\r").rsplit("\r", 1)[-1].rstrip()
        if line:
            lines.append(line)
    return lines


def error_line(lines: list[str]) -> str | None:
    """The most specific error in lmms-eval's output: its own "Error during evaluation: ..."
    line, else the last exception line of a traceback."""
    for pattern in (_LMMS_EVAL_ERROR, _EXCEPTION):
        for line in reversed(lines):
            match = pattern.search(line)
            if match:
                return match.group(1) if pattern is _LMMS_EVAL_ERROR else f"{match.group(1)}: {match.group(2)}"
    return None


def _truncate(text: str, limit: int) -> str:
    encoded = text.encode()
    return text if len(encoded) <= limit else encoded[: max(limit - 3, 0)].decode(errors="ignore") + "..."


def termination_message(summary: str, log_tail: str = "", limit: int = MAX_BYTES) -> str:
    """`summary`, then as many of the log's last lines as fit in `limit` bytes."""
    message = _truncate(summary, limit)
    header = "\n--- last lines of lmms-eval output ---"
    lines = clean_log(log_tail)
    room = limit - len(message.encode()) - len(header.encode())
    kept: list[str] = []
    for line in reversed(lines):
        line = _truncate(line, 512)
        cost = len(line.encode()) + 1
        if cost > room:
            break
        kept.append(line)
        room -= cost
    if not kept:
        return message
    return message + header + "".join("\n" + line for line in reversed(kept))


def write_termination_log(path: Path, message: str) -> None:
    """Best effort: a missing or read-only path must not hide the failure's exit code."""
    with contextlib.suppress(OSError):
        path.write_text(_truncate(message, MAX_BYTES))
