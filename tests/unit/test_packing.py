"""The packing decision on explicit inventories: which waiting task starts, on which cores and GPUs.

A small discrete-event simulation drives :class:`Units` and :func:`next_to_start` as the spawner
does (start whatever the decision allows, then jump to the next end) and checks, at every
moment, that no unit is held twice and no resource is oversubscribed."""

from __future__ import annotations

import heapq
import random

import pytest

from mpifarmer.scheduling.capacity import Units, compact, most_at_once, next_to_start, request_of

#: A GPU node in small: 16 cores in two NUMA domains, 4 GPUs, two near each domain.
NODE = {"slots": 16, "cores": 16, "gpus": 4}
NEAR = {0: list(range(8)), 1: list(range(8)), 2: list(range(8, 16)), 3: list(range(8, 16))}


def simulate(tasks: list[tuple[dict[str, int], float]], capacity: dict[str, int],
             near: dict[int, list[int]] | None = None,
             chooser=next_to_start) -> dict[int, tuple[float, float, dict[str, list[int]]]]:
    """Run ``tasks`` (request, duration), all queued at time 0 in list order; return each task's
    (start, end, units). Asserts at every start that the units it takes are free."""
    units = Units(capacity, near)
    waiting = list(range(len(tasks)))
    ends: list[tuple[float, int]] = []
    held: dict[str, set[int]] = {name: set() for name in capacity}
    placed: dict[int, tuple[float, float, dict[str, list[int]]]] = {}
    now = 0.0
    while waiting or ends:
        while (index := chooser([tasks[task][0] for task in waiting], units)) is not None:
            task = waiting.pop(index)
            request, duration = tasks[task]
            given = units.take(request)
            for name, taken in given.items():
                assert len(taken) == request[name], (task, name, taken)
                assert not held[name] & set(taken), f"task {task} given {name} {taken} already held"
                held[name] |= set(taken)
                assert len(held[name]) <= capacity[name]
            placed[task] = (now, now + duration, given)
            heapq.heappush(ends, (now + duration, task))
        if not ends:
            raise AssertionError(f"tasks {waiting} can never start")
        now, task = heapq.heappop(ends)
        given = placed[task][2]
        for name, taken in given.items():
            held[name] -= set(taken)
        units.give_back(given)
    return placed


def overlapping(a: tuple[float, float, dict], b: tuple[float, float, dict]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def test_mixed_sizes_share_the_node_without_oversubscribing_it() -> None:
    rng = random.Random(14)
    tasks = []
    for _ in range(300):
        cores = rng.choice([1, 1, 1, 2, 4, 8, 16])
        gpus = rng.choice([0, 0, 1, 2])
        tasks.append(({"slots": 1, "cores": cores, "gpus": gpus}, rng.uniform(0.1, 3.0)))
    placed = simulate(tasks, NODE, NEAR)
    assert sorted(placed) == list(range(len(tasks)))
    # What the simulation asserted at each start, checked once more from the outcome: at the start
    # of every run, the runs going on hold no unit in common with it and fit the node together.
    for task, (t0, _, given) in placed.items():
        live = [other for other, run in placed.items() if run[0] <= t0 < run[1]]
        for name, count in NODE.items():
            assert sum(len(placed[other][2].get(name, ())) for other in live) <= count
        for other in live:
            if other != task:
                for name in given:
                    assert not set(given[name]) & set(placed[other][2].get(name, ())), (task, other, name)


def test_a_large_task_is_not_starved_by_a_stream_of_small_ones() -> None:
    # Four one-core tasks hold the node's 4 cores; then a 4-core task; then a long stream of
    # one-core tasks. Each end frees one core, which a greedy chooser would give to the next
    # small task at once, forever; the reservation keeps the freed cores for the large one.
    small = ({"slots": 1, "cores": 1}, 1.0)
    tasks = [({"slots": 1, "cores": 1}, 1.0 + i / 10) for i in range(4)] + [({"slots": 1, "cores": 4}, 1.0)]
    tasks += [small] * 200
    placed = simulate(tasks, {"slots": 4, "cores": 4})
    assert placed[4][0] == pytest.approx(1.3)  # as soon as the last of the first four ended
    assert all(placed[task][0] >= placed[4][1] for task in range(5, len(tasks)))


def greedy(waiting: list[dict[str, int]], units: Units) -> int | None:
    """The first waiting task that fits: what the reservation is there to prevent."""
    return next((index for index, request in enumerate(waiting) if units.fits(request)), None)


def test_the_starvation_check_fails_for_a_greedy_chooser() -> None:
    """The test above can fail: without the reservation, the large task waits for the whole stream."""
    small = ({"slots": 1, "cores": 1}, 1.0)
    tasks = [({"slots": 1, "cores": 1}, 1.0 + i / 10) for i in range(4)] + [({"slots": 1, "cores": 4}, 1.0)]
    tasks += [small] * 200
    placed = simulate(tasks, {"slots": 4, "cores": 4}, chooser=greedy)
    assert placed[4][0] > 40  # it started only once the stream ran dry


def test_younger_tasks_use_what_the_oldest_cannot_and_nothing_it_lacks() -> None:
    units = Units({"slots": 8, "cores": 8, "gpus": 1})
    units.take({"slots": 1, "cores": 2, "gpus": 1})  # the only GPU is busy
    gpu_task = {"slots": 1, "cores": 2, "gpus": 1}
    cpu_task = {"slots": 1, "cores": 1}
    # The GPU task waits for the GPU; CPU tasks behind it may use the 6 free cores but the 2 it needs.
    assert next_to_start([gpu_task, cpu_task], units) == 1
    units.take({"slots": 1, "cores": 4})
    assert next_to_start([gpu_task, cpu_task], units) is None  # 2 free cores: both kept for the GPU task
    assert next_to_start([gpu_task, {"slots": 1, "cores": 1, "gpus": 1}], units) is None  # nor the GPU
    # A large CPU task waiting for cores keeps every core: a GPU task behind it takes none.
    units = Units({"slots": 8, "cores": 8, "gpus": 2})
    units.take({"slots": 1, "cores": 6})
    assert next_to_start([{"slots": 1, "cores": 4}, {"slots": 1, "cores": 1, "gpus": 1}], units) is None
    assert next_to_start([{"slots": 1, "cores": 4}, {"slots": 1, "cores": 0, "gpus": 1}], units) == 1


def test_cores_are_compact_neighbours() -> None:
    assert compact([0, 1, 2, 3], 2) == [0, 1]
    assert compact([0, 2, 3, 4, 9], 3) == [2, 3, 4]
    assert compact([1, 5, 6, 10, 11], 2) == [5, 6]
    units = Units({"cores": 8})
    first, second, third = units.take({"cores": 3}), units.take({"cores": 2}), units.take({"cores": 3})
    assert (first, second, third) == ({"cores": [0, 1, 2]}, {"cores": [3, 4]}, {"cores": [5, 6, 7]})
    units.give_back(first)
    units.give_back(third)
    units.take({"cores": 1})  # takes core 0: free are 1, 2 and 5, 6, 7
    assert units.take({"cores": 3}) == {"cores": [5, 6, 7]}  # not 1, 2, 5


def test_a_gpu_task_gets_the_cores_near_its_gpus() -> None:
    units = Units(NODE, NEAR)
    first = units.take({"slots": 1, "cores": 4, "gpus": 1})
    assert first["gpus"] == [0] and first["cores"] == [0, 1, 2, 3]
    # Six of the first domain's cores are gone: a task needing 4 cores and 2 GPUs goes to the
    # second domain, whose two GPUs and cores are all free.
    units.take({"slots": 1, "cores": 2})
    pair = units.take({"slots": 1, "cores": 4, "gpus": 2})
    assert pair["gpus"] == [2, 3] and set(pair["cores"]) <= set(range(8, 16))
    # No core is free near the only free GPU: the run gets that GPU, and the most compact free cores.
    units.take({"slots": 1, "cores": 2})  # the first domain's cores are all taken now
    assert units.take({"slots": 1, "cores": 2, "gpus": 1}) == {"gpus": [1], "cores": [12, 13], "slots": [4]}


def test_gpus_without_nearness_are_handed_out_lowest_first() -> None:
    units = Units({"gpus": 4})
    assert units.take({"gpus": 2}) == {"gpus": [0, 1]}
    assert units.take({"gpus": 1}) == {"gpus": [2]}
    units.give_back({"gpus": [0]})
    assert units.take({"gpus": 2}) == {"gpus": [0, 3]}


def test_most_at_once_is_the_tightest_resource() -> None:
    assert most_at_once({"cores": 64, "gpus": 4}, {"cores": 8}) == 8
    assert most_at_once({"cores": 64, "gpus": 4}, {"cores": 8, "gpus": 1}) == 4
    assert most_at_once({"cores": 64, "gpus": 4}, {"cores": 32, "gpus": 1}) == 2
    assert most_at_once({"cores": 64}, {"cores": 8, "gpus": 1}) == 0


def test_a_task_s_cores_are_slots_in_a_pool_that_binds_none() -> None:
    binding_default = {"slots": 1, "cores": 4, "gpus": 1}
    assert request_of({}, binding_default) == binding_default
    assert request_of({"resources": {"cores": 8}}, binding_default) == {"slots": 1, "cores": 8, "gpus": 1}
    assert request_of({"resources": {"cores": 8, "gpus": 0}}, binding_default) == {"slots": 1, "cores": 8, "gpus": 0}
    assert request_of({"resources": {"cores": 3}}) == {"slots": 3}  # as before pools had cores
    assert request_of({"resources": {"cores": 3, "gpus": 1}}, {"slots": 1, "gpus": 1}) == {"slots": 3, "gpus": 1}


def test_a_request_refused_once_is_not_judged_again_but_a_different_one_behind_it_is() -> None:
    units = Units({"slots": 8, "cores": 8, "gpus": 1})
    units.take({"slots": 1, "cores": 6})
    gpu_heavy = {"slots": 1, "cores": 1, "gpus": 1}
    waiting = [{"slots": 1, "cores": 4}, gpu_heavy, gpu_heavy, gpu_heavy, {"slots": 1, "cores": 0, "gpus": 1}]
    assert next_to_start(waiting, units) == 4
    assert next_to_start(waiting[:4], units) is None
