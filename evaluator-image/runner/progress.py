"""lmms-eval's progress, read from its tqdm bars as they stream out of the child, and published.

lmms-eval reports progress only as tqdm bars on stderr: per task an undescribed bar while it builds
contexts (after the log line "Building contexts for <task> on rank N..."), then "Model Responding"
over all requests of one output type, then per task "Postprocessing"; transformers and datasets add
their own ("Loading weights", "Generating test split"). tqdm draws each redraw as '\\r' + bar with
no newline, so a reader that waits for lines sees nothing until a bar closes, and one that buffers
a line without bound dies on a long '\\r'-free stretch (upstream's server crashed on a line over
64 KiB). So `ProgressParser` takes raw byte chunks, keeps at most SEGMENT_LIMIT bytes of the
segment still open, and looks at only the newest bar of each chunk: its cost per chunk is a few
C-level scans however many redraws the chunk holds, and nothing in the stream can make it raise.

`ProgressPublisher` hands the newest state to a callback on its own thread, at most once per
interval, dropping the states in between, so a slow or failing publisher never slows the child.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

#: Seconds between two published updates (the final one is always published at once).
PUBLISH_INTERVAL_SECONDS = 5.0
#: Bytes kept of the segment (text since the last '\r' or '\n') that is still open; a tqdm bar
#: starts its segment and is far shorter, so whatever runs past this is never a bar's head.
SEGMENT_LIMIT = 4096

log = logging.getLogger(__name__)

_DELIMITERS = (b"\r", b"\n")
# CSI sequences (colours, tqdm's cursor moves for nested bars) and OSC sequences.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")
# Digits are bounded so that no junk number overflows a float or int conversion.
_NUMBER = r"\d{1,15}(?:\.\d{1,6})?[kMGTPEZY]?"
_CLOCK = r"-?\d{1,9}(?::\d\d){1,2}"
# tqdm's default format: "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining},
# {rate_fmt}{postfix}]"; with ncols=0 the "|{bar}|" is left out. The closing ']' is required, so a
# bar cut by a chunk boundary never matches half-read.
_BAR = re.compile(
    rf"(?P<percent>\d{{1,3}})%(?:\|[^|\r\n]*\|)?\s*(?P<done>{_NUMBER})/(?P<total>{_NUMBER})\s+"
    rf"\[(?P<elapsed>{_CLOCK})<(?P<remaining>{_CLOCK}|\?),\s*(?P<rate>[^,\]]*)[^\]]*\]"
)
_RATE = re.compile(r"(?P<value>\d{1,15}(?:\.\d{1,6})?)(?P<si>[kMGTPEZY]?)(?P<unit>.*)")
_SI = {"": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18, "Z": 1e21, "Y": 1e24}
# A described bar's head ("Model Responding:  12%"), to tell whether one came between two points.
_DESCRIBED = re.compile(rb"\S: +\d{1,3}%")
# Log lines that name what the next undescribed bar counts, and the stage they give it.
_CONTEXTS = (
    (re.compile(rb"Building contexts for (\S+) on rank"), "Building contexts for {}"),
    (re.compile(rb"bootstrapping for stddev: (\S+)"), "Bootstrapping stddev of {}"),
)


def rfc3339_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Progress:
    """One bar's state: the newest lmms-eval showed when `updated_at` was read."""

    percent: float
    done: int
    total: int
    #: The bar's description ("Model Responding", "Postprocessing"), or for lmms-eval's undescribed
    #: per-task bars what the log line before it says ("Building contexts for mme"); "" if nothing.
    stage: str
    #: Items per second, as tqdm shows it; None before tqdm knows.
    rate: float | None
    eta_seconds: int | None
    #: RFC 3339 UTC; only a change of stage, done or total makes a new Progress, so a job whose
    #: updatedAt stops moving has stopped making progress.
    updated_at: str

    def to_json(self) -> dict[str, Any]:
        """The shape of EvalJob `status.progress` (camelCase), as the operator copies it."""
        return {
            "percent": self.percent,
            "done": self.done,
            "total": self.total,
            "stage": self.stage,
            "rate": self.rate,
            "etaSeconds": self.eta_seconds,
            "updatedAt": self.updated_at,
        }


def _number(text: str) -> float:
    return float(text[:-1]) * _SI[text[-1]] if text[-1] in _SI else float(text)


def _seconds(clock: str) -> int | None:
    """tqdm's "[H:]MM:SS" (or "?") as seconds."""
    if clock == "?":
        return None
    sign = -1 if clock.startswith("-") else 1
    total = 0
    for part in clock.lstrip("-").split(":"):
        if not part.isdigit():
            return None
        total = total * 60 + int(part)
    return sign * total


def _rate(text: str) -> float | None:
    """tqdm's rate_fmt: "6.37it/s", " 2476.56 examples/s", "1.23kit/s", or inverted when slow, "1.25s/it"."""
    match = _RATE.match(text.strip())
    if match is None:
        return None
    value = float(match["value"]) * _SI[match["si"]]
    unit = match["unit"].strip()
    if unit.startswith("s/"):
        return 1.0 / value if value else None
    if unit.endswith("/s"):
        return value
    return None


@dataclass(frozen=True)
class Bar:
    description: str
    done: int
    total: int
    rate: float | None
    eta_seconds: int | None


def parse_bar(segment: str) -> Bar | None:
    """The tqdm bar at the head of one '\\r'/'\\n'-delimited segment (ANSI codes allowed), or None."""
    text = _ANSI.sub("", segment)
    match = _BAR.search(text)
    if match is None:
        return None
    total = _number(match["total"])
    if total <= 0:
        return None
    description = text[: match.start()].strip().removesuffix(":").strip()
    return Bar(
        description, round(_number(match["done"])), round(total), _rate(match["rate"]), _seconds(match["remaining"])
    )


def _segment_start(data: bytes, end: int) -> int:
    return max(data.rfind(b"\r", 0, end), data.rfind(b"\n", 0, end)) + 1


def _segment_end(data: bytes, start: int) -> int:
    ends = [i for i in (data.find(b"\r", start), data.find(b"\n", start)) if i >= 0]
    return min(ends) if ends else len(data)


class ProgressParser:
    """Feeds on the child's raw output, chunk by chunk, in order; never raises, keeps O(1) state."""

    def __init__(self, clock: Callable[[], str] = rfc3339_now) -> None:
        self._clock = clock
        self._open = b""  # head of the segment not yet ended by '\r' or '\n', at most SEGMENT_LIMIT
        self._context: str | None = None  # stage for the next undescribed bar
        self.latest: Progress | None = None

    def feed(self, data: bytes) -> Progress | None:
        """Read one chunk; returns a new Progress if the chunk moved the newest bar, else None."""
        last_delimiter = max(data.rfind(b"\r"), data.rfind(b"\n"))
        if last_delimiter < 0:
            if len(self._open) >= SEGMENT_LIMIT:
                return None  # inside a long stretch that is no bar: nothing to read until it ends
            self._open += data[: SEGMENT_LIMIT - len(self._open)]
            bar = parse_bar(self._open.decode(errors="replace"))
            return self._update(bar, self._context) if bar else None

        closed = self._open + data[: last_delimiter + 1]
        self._open = data[last_delimiter + 1 :][:SEGMENT_LIMIT]
        contexts = self._contexts(closed)
        bar = parse_bar(self._open.decode(errors="replace")) if self._open else None
        position = len(closed)
        if bar is None:
            bar, position = self._last_bar(closed)
        if bar is None:
            if contexts:
                self._context = contexts[-1][1]
            return None
        context = None
        if not bar.description:
            before = [(at, stage) for at, stage in contexts if at < position]
            since, context = before[-1] if before else (0, self._context)
            if _DESCRIBED.search(closed, since, position):
                context = None  # a described bar came in between: that stage is over
        after = [stage for at, stage in contexts if at > position]
        self._context = after[-1] if after else context
        return self._update(bar, context)

    @staticmethod
    def _contexts(data: bytes) -> list[tuple[int, str]]:
        found = [(m.start(), stage.format(m[1].decode(errors="replace"))) for pattern, stage in _CONTEXTS
                 for m in pattern.finditer(data)]  # fmt: skip
        return sorted(found)

    @staticmethod
    def _last_bar(data: bytes) -> tuple[Bar | None, int]:
        """The newest bar among closed segments, scanning back from the end one segment at a time."""
        end = len(data)
        while (percent := data.rfind(b"%", 0, end)) >= 0:
            start = _segment_start(data, percent)
            stop = min(_segment_end(data, start), start + SEGMENT_LIMIT)
            bar = parse_bar(data[start:stop].decode(errors="replace"))
            if bar is not None:
                return bar, start
            end = start
        return None, 0

    def _update(self, bar: Bar, context: str | None) -> Progress | None:
        stage = bar.description or context or ""
        last = self.latest
        if last is not None and (last.stage, last.done, last.total) == (stage, bar.done, bar.total):
            return None
        percent = round(min(100.0, 100.0 * bar.done / bar.total), 1)
        self.latest = Progress(percent, bar.done, bar.total, stage, bar.rate, bar.eta_seconds, self._clock())
        return self.latest


class ProgressPublisher:
    """Calls `callback` with the newest offered Progress from one worker thread, at most once per
    `interval` seconds; states offered in between are dropped (only the newest matters). The
    callback's exceptions are logged once and otherwise ignored."""

    def __init__(self, callback: Callable[[Progress], None], interval: float = PUBLISH_INTERVAL_SECONDS) -> None:
        self._callback = callback
        self._interval = interval
        self._condition = threading.Condition()
        self._latest: Progress | None = None
        self._sent: Progress | None = None
        self._closing = False
        self._failed = False
        self._thread = threading.Thread(target=self._run, name="evalkube-progress", daemon=True)
        self._thread.start()

    def offer(self, progress: Progress) -> None:
        """Never blocks on the callback: it only swaps the newest state in."""
        with self._condition:
            self._latest = progress
            self._condition.notify()

    def close(self, timeout: float) -> bool:
        """Publish the newest state now if it was not yet, then stop; False if the callback was
        still busy after `timeout` seconds (the thread is a daemon and is left to it)."""
        with self._condition:
            self._closing = True
            self._condition.notify()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        not_before = 0.0
        while True:
            with self._condition:
                while True:
                    due = self._latest is not self._sent
                    if self._closing and not due:
                        return
                    wait = not_before - time.monotonic()
                    if due and (self._closing or wait <= 0):
                        break
                    self._condition.wait(wait if due else None)
                progress = self._sent = self._latest
            not_before = time.monotonic() + self._interval
            try:
                self._callback(progress)
            except Exception:
                if not self._failed:
                    self._failed = True
                    log.exception("publishing progress failed (further failures are not logged)")
