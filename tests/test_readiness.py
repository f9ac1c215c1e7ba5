"""`GET /-/ready`'s answer (`pagerd.engine.readiness`): at once, from what the node knows, while
the database answers, fails, or hangs (a ping that never returns), and while a node's lease
rounds fail. Under MockClock, with a ping of our own that the test holds."""

from __future__ import annotations

import attrs
import trio
import trio.testing

from pagerd.engine.readiness import PING_EVERY, STALE_AFTER, Readiness
from pagerd.storage.port import StoreUnavailable


@attrs.define
class Database:
    """The ping's database: answers, fails, or hangs until `heal`."""

    error: str | None = None
    hung: bool = False
    pings: int = 0
    healed: trio.Event = attrs.Factory(trio.Event)

    async def ping(self) -> None:
        self.pings += 1
        await trio.lowlevel.checkpoint()
        if self.hung:
            await self.healed.wait()
        if self.error is not None:
            raise StoreUnavailable(self.error)

    def heal(self) -> None:
        self.hung, self.error = False, None
        self.healed.set()
        self.healed = trio.Event()


@attrs.define
class Rounds:
    round_error: str | None = None


async def answered_at_once(readiness: Readiness) -> str | None:
    """The answer, checked to have taken no time at all."""
    before = trio.current_time()
    why = await readiness.ready()
    assert trio.current_time() == before
    return why


async def test_ready_answers_at_once_while_the_database_hangs_and_says_for_how_long(
    autojump_clock: trio.testing.MockClock,
) -> None:
    database, rounds = Database(), Rounds()
    readiness = Readiness(database.ping, rounds)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(readiness.run)
        await trio.sleep(PING_EVERY / 2)
        assert await answered_at_once(readiness) is None  # and a ping asked for
        await trio.sleep(0.01)  # (answered)
        database.hung = True
        await trio.sleep(PING_EVERY + STALE_AFTER / 2)
        assert await answered_at_once(readiness) is None  # a ping may take a moment
        await trio.sleep(STALE_AFTER)
        why = await answered_at_once(readiness)
        assert why is not None and why.startswith("the database has not answered for ")
        pings = database.pings
        await trio.sleep(30)
        assert database.pings == pings  # one ping hangs; no pile of them
        why = await answered_at_once(readiness)
        assert why is not None and float(why.split()[-1].removesuffix("s")) >= 30
        database.heal()
        await trio.sleep(0.01)
        assert await answered_at_once(readiness) is None
        nursery.cancel_scope.cancel()


async def test_ready_says_why_the_last_ping_failed_until_one_succeeds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    database = Database()
    readiness = Readiness(database.ping)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(readiness.run)
        database.error = "pg1.example.com:5432: connection refused"
        assert await answered_at_once(readiness) is None  # nothing known yet; a ping asked for
        await trio.sleep(0.01)
        assert await answered_at_once(readiness) == (
            "the database does not answer: pg1.example.com:5432: connection refused"
        )
        database.heal()
        await trio.sleep(PING_EVERY + 0.01)
        assert (await answered_at_once(readiness)) is not None  # the last ping's; another asked
        await trio.sleep(0.01)
        assert await answered_at_once(readiness) is None
        pings = database.pings
        await trio.sleep(3600)
        assert database.pings == pings  # no check, no ping
        nursery.cancel_scope.cancel()


async def test_a_node_whose_lease_rounds_fail_is_not_ready(
    autojump_clock: trio.testing.MockClock,
) -> None:
    database, rounds = Database(), Rounds()
    readiness = Readiness(database.ping, rounds)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(readiness.run)
        await trio.sleep(0.1)
        rounds.round_error = "lock timeout"
        assert await answered_at_once(readiness) == "its lease rounds fail: lock timeout"
        rounds.round_error = None
        assert await answered_at_once(readiness) is None
        nursery.cancel_scope.cancel()
