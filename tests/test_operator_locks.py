"""KeyedLocks: one holder per key at a time, other keys never wait, and nothing kept once free."""

from __future__ import annotations

import asyncio

from evalkube.operator.locks import KeyedLocks


def test_one_holder_per_key_and_nothing_kept_after() -> None:
    locks = KeyedLocks()
    inside: dict[str, int] = {"a": 0, "b": 0}
    most: dict[str, int] = {"a": 0, "b": 0}
    order: list[str] = []

    async def work(key: str, label: str) -> None:
        async with locks.hold(key):
            inside[key] += 1
            most[key] = max(most[key], inside[key])
            order.append(label)
            await asyncio.sleep(0.01)
            inside[key] -= 1

    async def scenario() -> None:
        await asyncio.gather(*(work("a", f"a{i}") for i in range(4)), *(work("b", f"b{i}") for i in range(4)))

    asyncio.run(scenario())
    assert most == {"a": 1, "b": 1}
    assert order[:2] == ["a0", "b0"]  # b never waited for a
    assert len(locks) == 0


def test_a_failing_holder_frees_the_key() -> None:
    locks = KeyedLocks()

    async def scenario() -> None:
        try:
            async with locks.hold("a"):
                raise RuntimeError("boom")
        except RuntimeError:
            pass
        async with asyncio.timeout(1):
            async with locks.hold("a"):
                pass

    asyncio.run(scenario())
    assert len(locks) == 0
