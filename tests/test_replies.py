"""A connection's reply queue: request order, bounded, and closed cleanly."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from pagerd.front.replies import Reply, ReplyQueue


def _set(reply: Reply, text: str) -> Reply:
    reply.set(text.encode())
    return reply


async def test_replies_go_out_in_request_order_whatever_order_they_are_set_in() -> None:
    queue = ReplyQueue(8)
    first, second, third = Reply("alert"), Reply("alert"), Reply("alert")
    for reply in (first, second, third):
        await queue.put(reply)
    taken: list[bytes] = []

    async def writer() -> None:
        while batch := await queue.take(8):
            taken.extend(reply.line for reply in batch)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer)
            third.set(b"3")
            second.set(b"2")
            await trio.testing.wait_all_tasks_blocked()
            assert taken == []  # the first is not decided yet: nothing may overtake it
            first.set(b"1")
            await trio.testing.wait_all_tasks_blocked()
            assert taken == [b"1", b"2", b"3"]
            await queue.put(_set(Reply("ping"), "4"))  # to a writer waiting on an empty queue
            await trio.testing.wait_all_tasks_blocked()
            assert taken == [b"1", b"2", b"3", b"4"]
            queue.close()
    assert taken == [b"1", b"2", b"3", b"4"]


async def test_a_full_queue_holds_the_reader_until_the_writer_takes_some() -> None:
    queue = ReplyQueue(2)
    await queue.put(_set(Reply("ping"), "1"))
    await queue.put(_set(Reply("ping"), "2"))
    put = trio.Event()

    async def reader() -> None:
        await queue.put(_set(Reply("ping"), "3"))
        put.set()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            assert not put.is_set()
            assert [r.line for r in await queue.take(1)] == [b"1"]
            await put.wait()
            assert [r.line for r in await queue.take(8)] == [b"2", b"3"]


async def test_a_closed_queue_ends_the_writer_only_after_the_replies_still_pending() -> None:
    queue = ReplyQueue(8)
    pending = Reply("alert")
    await queue.put(pending)
    queue.close()
    ended: list[list[Reply]] = []

    async def writer() -> None:
        ended.append(await queue.take(8))
        ended.append(await queue.take(8))

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer)
            await trio.testing.wait_all_tasks_blocked()
            assert ended == []
            pending.set(b"ok")
    assert [[r.line for r in batch] for batch in ended] == [[b"ok"], []]
    with pytest.raises(trio.ClosedResourceError):
        await queue.put(Reply("ping"))


def test_a_reply_is_set_once() -> None:
    reply = _set(Reply("alert"), "ok")
    with pytest.raises(AssertionError):
        reply.set(b"again")
