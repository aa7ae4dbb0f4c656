"""Fault injection: the failures a real apiserver produces, on chosen requests, replayable from a seed.

Why: an operator's promises (nothing lost, nothing duplicated) only mean something under the
conditions a cluster creates: 5xx, 429 from priority and fairness, timeouts, cut watches,
expired resourceVersions, conflicts, and writes whose response never arrives.

    emu.faults.seed = 7
    emu.faults.add(FaultRule("lost_response", verbs={"create"}, resource="evaljobs", rate=0.1))
    emu.faults.counts()   # {"lost_response": 3}; records carry RequestRecord.fault
    emu.faults.clear()

Kinds, and what a client sees:
- "error": a Status with `code` (500 InternalError, 503 ServiceUnavailable, 504 Timeout); nothing applied.
- "throttle": 429 with `Retry-After: retry_after`, the plain-text body of the apiserver's
  max-in-flight / priority-and-fairness filters; nothing applied.
- "timeout": the server holds the request `delay` seconds (past the client's timeout), then drops
  the connection without answering; nothing applied.
- "slow": the request is answered normally after `delay` seconds.
- "conflict": 409 Conflict ("the object has been modified") on update/patch; nothing applied.
- "lost_response": the request is applied, then the connection is dropped before the response
  (urllib3 raises ProtocolError, aiohttp ServerDisconnectedError) although the write happened.
- "watch_cut": a watch is cut mid-stream, without the closing chunk, after `after_events` events
  or `delay` seconds, whichever comes first.
- "watch_expired": a watch resumed from a resourceVersion gets the 410 Expired ERROR event.

Matching: `verbs` (None: any), `resource` as a glob over "plural[/subresource]" ("evaljobs" is
the main resource only, "evaljobs/status", "evaljobs*", "*/status"), `group` and `namespace`
(None: any), `token` (None: any caller). Kinds that only make sense for some verbs only match
those: conflict (update, patch), lost_response (not watch), watch_* (watch).

Determinism: whether the n-th request with a given (rule, verb, resource, namespace, name) is hit
depends only on the seed and n (a hash, not a shared random stream), so concurrent clients
interleaving differently between runs still get the same faults on the same requests. `limit`
caps a rule's injections. With no rules, the only cost on the request path is one truthiness test.
"""

from __future__ import annotations

import fnmatch
import hashlib
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from . import errors

KINDS = ("error", "throttle", "timeout", "slow", "conflict", "lost_response", "watch_cut", "watch_expired")
_ONLY_VERBS = {
    "conflict": frozenset({"update", "patch"}),
    "watch_cut": frozenset({"watch"}),
    "watch_expired": frozenset({"watch"}),
}
_NEVER_VERBS = {"lost_response": frozenset({"watch"})}


@dataclass(frozen=True)
class FaultRule:
    kind: str
    verbs: frozenset[str] | None = None
    resource: str | None = None
    group: str | None = None
    namespace: str | None = None
    token: str | None = None
    rate: float = 1.0
    limit: int | None = None
    code: int = 500  # "error"
    retry_after: int = 1  # "throttle"
    delay: float = 2.0  # "timeout", "slow", "watch_cut"
    after_events: int = 1  # "watch_cut"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {', '.join(KINDS)}")
        if self.verbs is not None and not isinstance(self.verbs, frozenset):
            object.__setattr__(self, "verbs", frozenset(self.verbs))
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError("rate must be within [0, 1]")
        if self.kind == "error" and self.code not in _ERRORS:
            raise ValueError(f"error code must be one of {sorted(_ERRORS)}")

    def matches(
        self, verb: str, group: str, resource: str, namespace: str, token: str | None, resume: bool = False
    ) -> bool:
        if self.kind == "watch_expired" and not resume:
            return False
        if verb in _NEVER_VERBS.get(self.kind, ()) or verb not in _ONLY_VERBS.get(self.kind, (verb,)):
            return False
        return (
            (self.verbs is None or verb in self.verbs)
            and (self.resource is None or fnmatch.fnmatchcase(resource, self.resource))
            and (self.group is None or group == self.group)
            and (self.namespace is None or namespace == self.namespace)
            and (self.token is None or token == self.token)
        )


@dataclass(frozen=True)
class Fault:
    """One injection decided for one request."""

    rule: FaultRule

    @property
    def kind(self) -> str:
        return self.rule.kind


_ERRORS = {
    500: ("InternalError", "Internal error occurred: etcdserver: leader changed"),
    503: ("ServiceUnavailable", "the server is currently unable to handle the request"),
    504: ("Timeout", "Timeout: request did not complete within requested timeout - context deadline exceeded"),
}
THROTTLE_BODY = b"Too many requests, please try again later.\n"


def server_error(code: int) -> errors.ApiError:
    reason, message = _ERRORS[code]
    details = {"causes": [{"message": message.removeprefix("Internal error occurred: ")}]} if code == 500 else None
    return errors.ApiError(code, reason, message, details)


@dataclass
class Faults:
    """The rule set of one emulator; thread-safe."""

    seed: int = 0
    rules: list[FaultRule] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: Counter[tuple[object, ...]] = Counter()
        self._used: Counter[int] = Counter()
        self._injected: Counter[str] = Counter()

    def add(self, *rules: FaultRule) -> None:
        with self._lock:
            self.rules = [*self.rules, *rules]

    def extend(self, rules: Iterable[FaultRule]) -> None:
        self.add(*rules)

    def clear(self) -> None:
        """Drop the rules and the per-request counters (so the same seed replays from the start)."""
        with self._lock:
            self.rules = []
            self._seen.clear()
            self._used.clear()

    def reset_counts(self) -> None:
        with self._lock:
            self._injected.clear()

    def counts(self) -> dict[str, int]:
        """How many faults of each kind were injected since the start (or reset_counts)."""
        with self._lock:
            return dict(self._injected)

    def _draw(self, index: int, key: tuple[object, ...], n: int) -> float:
        digest = hashlib.blake2b(repr((self.seed, index, key, n)).encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64

    def decide(
        self,
        verb: str,
        group: str,
        resource: str,
        namespace: str,
        name: str,
        token: str | None,
        resume: bool = False,
    ) -> Fault | None:
        """The fault for this request, if a rule hits it; counted as injected."""
        rules = self.rules
        if not rules:
            return None
        with self._lock:
            for index, rule in enumerate(rules):
                if not rule.matches(verb, group, resource, namespace, token, resume):
                    continue
                if rule.limit is not None and self._used[index] >= rule.limit:
                    continue
                key = (index, verb, group, resource, namespace, name)
                n = self._seen[key]
                self._seen[key] = n + 1
                if rule.rate >= 1.0 or self._draw(index, key, n) < rule.rate:
                    self._used[index] += 1
                    self._injected[rule.kind] += 1
                    return Fault(rule)
        return None
