"""The dispatcher state machine: how much to claim, which rank gets what, draining and lost ranks."""

from __future__ import annotations

from mpifarmer.scheduling.dispatch import Dispatcher


def dispatcher(*ranks: tuple[int, int], short_task: float = 1.0, recheck: float = 2.0) -> Dispatcher:
    """A dispatcher with ranks 0, 1, ... of (slots, prefetch)."""
    d = Dispatcher(short_task=short_task, recheck=recheck)
    for rank, (slots, prefetch) in enumerate(ranks):
        d.add_rank(rank, slots, prefetch)
    return d


def feed(d: Dispatcher, ids: list[int], now: float = 0.0) -> list[tuple[int, int]]:
    """Claim ``ids`` (as many as were asked for) and assign them."""
    d.claimed(ids, len(ids), now)
    return d.assign()


def finish_all(d: Dispatcher, pairs: list[tuple[int, int]], duration: float) -> None:
    for rank, task in pairs:
        d.ended(rank, task, duration)


def test_no_ranks_wants_nothing() -> None:
    assert Dispatcher().want(0.0) == 0


def test_wants_enough_to_fill_every_slot_plus_prefetch() -> None:
    assert dispatcher((4, 0)).want(0.0) == 4
    assert dispatcher((4, 1), (2, 1)).want(0.0) == 8


def test_queued_tasks_reduce_what_is_wanted() -> None:
    d = dispatcher((4, 0))
    d.claimed([0, 1, 2], 3, 0.0)
    assert d.want(0.0) == 1


def test_in_flight_tasks_reduce_what_is_wanted_until_they_end() -> None:
    d = dispatcher((2, 1))
    pairs = feed(d, [0, 1, 2])
    assert d.want(0.0) == 0
    d.ended(*pairs[0], duration=5.0)
    assert d.want(0.0) == 1


def test_long_tasks_get_no_claim_ahead() -> None:
    d = dispatcher((2, 0), short_task=1.0)
    finish_all(d, feed(d, [0, 1]), duration=10.0)
    assert d.mean_duration == 10.0
    assert d.want(0.0) == 2


def test_short_tasks_get_a_claim_ahead_of_one_per_slot() -> None:
    d = dispatcher((2, 1), (3, 0), short_task=1.0)
    finish_all(d, feed(d, [0, 1, 2, 3, 4, 5]), duration=0.1)
    assert d.want(0.0) == (2 + 1 + 3) + (2 + 3)


def test_claim_ahead_waits_for_a_first_duration() -> None:
    d = dispatcher((3, 0), short_task=1.0)
    assert d.mean_duration is None
    assert d.want(0.0) == 3


def test_claim_ahead_stops_once_the_mean_reaches_the_short_task_limit() -> None:
    d = dispatcher((1, 0), short_task=1.0)
    finish_all(d, feed(d, [0]), duration=0.5)
    assert d.want(0.0) == 2
    finish_all(d, feed(d, [1]), duration=1.5)  # mean 1.0: not short any more
    assert d.want(0.0) == 1


def test_assign_fills_the_rank_with_most_room_first_and_tracks_in_flight() -> None:
    d = dispatcher((1, 0), (3, 0))
    pairs = feed(d, [10, 11, 12, 13, 14])
    assert pairs == [(1, 10), (1, 11), (0, 12), (1, 13)]
    assert list(d.queue) == [14]
    assert d.ranks[0].in_flight == {12} and d.ranks[1].in_flight == {10, 11, 13}
    assert d.in_flight == 4


def test_assign_respects_prefetch_and_then_waits_for_room() -> None:
    d = dispatcher((1, 1))
    assert feed(d, [0, 1, 2]) == [(0, 0), (0, 1)]
    assert d.assign() == []
    d.ended(0, 0, 1.0)
    assert d.assign() == [(0, 2)]


def test_assign_without_ranks_keeps_the_queue() -> None:
    d = Dispatcher()
    d.claimed([1, 2], 2, 0.0)
    assert d.assign() == [] and list(d.queue) == [1, 2]


def test_store_running_dry_stops_claims_until_the_recheck_interval() -> None:
    d = dispatcher((4, 0), recheck=2.0)
    d.claimed([0], 4, now=10.0)
    assert d.ran_dry()
    assert d.next_check(10.0) == 12.0
    assert d.want(11.9) == 0
    assert d.want(12.0) == 3


def test_full_claim_clears_the_ran_dry_state() -> None:
    d = dispatcher((4, 0), recheck=2.0)
    d.claimed([], 4, now=10.0)
    d.claimed([0, 1], 2, now=12.5)
    assert not d.ran_dry() and d.next_check(12.5) is None
    assert d.want(12.6) == 2


def test_claim_of_nothing_asked_leaves_the_ran_dry_state_alone() -> None:
    d = dispatcher((1, 0))
    d.claimed([], 1, now=1.0)
    d.claimed([], 0, now=5.0)
    assert d.next_check(5.0) == 3.0


def test_drain_returns_unassigned_tasks_and_stops_everything() -> None:
    d = dispatcher((1, 0))
    d.claimed([0, 1, 2], 3, now=0.0)
    assert d.assign() == [(0, 0)]
    assert d.drain() == [1, 2]
    assert d.want(100.0) == 0
    d.claimed([7], 0, now=1.0)
    assert d.assign() == []
    assert d.draining and not d.idle()  # task 0 still runs


def test_draining_has_no_next_check() -> None:
    d = dispatcher((1, 0))
    d.claimed([], 1, now=0.0)
    d.drain()
    assert d.next_check(0.0) is None


def test_lose_rank_returns_its_tasks_and_forgets_its_room() -> None:
    d = dispatcher((2, 0), (2, 0))
    pairs = feed(d, [5, 3, 9, 1])
    held = sorted(task for rank, task in pairs if rank == 1)
    assert d.lose_rank(1) == held
    assert d.slots == 2 and d.want(0.0) == 0
    assert d.lose_rank(1) == []


def test_end_on_a_lost_rank_still_counts_its_duration() -> None:
    d = dispatcher((1, 0), (1, 0))
    pairs = feed(d, [0, 1])
    d.lose_rank(pairs[0][0])
    d.ended(*pairs[0], duration=4.0)
    assert d.mean_duration == 4.0 and d.in_flight == 1


def test_idle_only_when_nothing_is_queued_or_running() -> None:
    d = dispatcher((1, 0))
    assert d.idle()
    d.claimed([0, 1], 2, 0.0)
    assert not d.idle()
    d.assign()
    d.ended(0, 0, 1.0)
    assert not d.idle()  # task 1 is still queued
    d.assign()
    d.ended(0, 1, 1.0)
    assert d.idle()


def test_a_whole_farm_runs_every_task_exactly_once() -> None:
    d = dispatcher((2, 1), (1, 0), recheck=1.0)
    store = list(range(20))
    ran: list[int] = []
    now = 0.0
    while store or not d.idle():
        want = d.want(now)
        if want:
            got, store = store[:want], store[want:]
            d.claimed(got, want, now)
        for rank, task in d.assign():
            d.ended(rank, task, 0.5)
            ran.append(task)
        now += 0.5
        assert now < 100, "the farm does not terminate"
    assert sorted(ran) == list(range(20)) and len(ran) == 20


def test_a_rank_with_a_prefetch_is_refilled_in_batches_never_below_its_slots() -> None:
    dispatcher = Dispatcher()
    dispatcher.add_rank(1, slots=100, prefetch=40)  # refill: 40 // 4 = 10
    dispatcher.claimed(list(range(1000)), 1000, 0.0)
    first = dispatcher.assign()
    assert len(first) == 140
    for task in range(9):
        dispatcher.ended(1, task, 0.01)
    assert dispatcher.assign() == [], "9 of room: not yet"
    dispatcher.ended(1, 9, 0.01)
    refill = dispatcher.assign()
    assert [task for _, task in refill] == list(range(140, 150)), "one message of 10"
    assert len(dispatcher.ranks[1].in_flight) == 140
    # While it waits for a refill, the rank holds at least its slots and most of its prefetch.
    for task in range(10, 19):
        dispatcher.ended(1, task, 0.01)
        assert len(dispatcher.ranks[1].in_flight) >= 100 + 40 - 10


def test_a_rank_without_a_prefetch_or_with_a_small_one_is_refilled_at_each_end() -> None:
    dispatcher = Dispatcher()
    dispatcher.add_rank(0, slots=2, prefetch=0)
    dispatcher.add_rank(1, slots=2, prefetch=3)  # 3 // 4 = 0: refilled at any room
    dispatcher.claimed(list(range(20)), 20, 0.0)
    assert len(dispatcher.assign()) == 7
    dispatcher.ended(0, next(iter(dispatcher.ranks[0].in_flight)), 0.01)
    dispatcher.ended(1, next(iter(dispatcher.ranks[1].in_flight)), 0.01)
    assert sorted(rank for rank, _ in dispatcher.assign()) == [0, 1]
