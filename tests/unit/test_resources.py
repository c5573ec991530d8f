"""A pool's resources from the options and an explicit inventory: capacity, defaults, binding, checks."""

from __future__ import annotations

import pytest

from mpifarmer.errors import UsageError
from mpifarmer.hardware import Gpu, Inventory
from mpifarmer.resources import PoolResources, line_check, plan
from mpifarmer.tasklists import JsonTaskList, ListTaskList

#: 64 CPUs, 4 GPUs each near 16 of them: a typical GPU node.
NODE = Inventory(tuple(range(64)), "affinity mask",
                 tuple(Gpu(str(i), frozenset(range(16 * i, 16 * i + 16))) for i in range(4)), "SLURM_JOB_GPUS",
                 "nvidia")
LAPTOP = Inventory((0, 1), "affinity mask")


def test_cores_per_task_binds_and_sizes_the_pool() -> None:
    pool = plan(NODE, proc=None, cpus_default=64, cores_per_task=8)
    assert pool.capacity == {"slots": 8, "cores": 64, "gpus": 4}
    assert pool.default == {"slots": 1, "cores": 8}
    assert pool.binding["cpus"] == list(range(64)) and pool.binding["hide"] is False
    assert pool.near[2] == list(range(32, 48))
    assert plan(NODE, proc=3, cpus_default=64, cores_per_task=8).capacity["slots"] == 3  # -n wins


def test_gpus_per_task_sizes_the_pool_by_the_tightest_resource() -> None:
    pool = plan(NODE, proc=None, cpus_default=64, cores_per_task=8, gpus_per_task=1)
    assert pool.slots == 4 and pool.default == {"slots": 1, "cores": 8, "gpus": 1} and pool.binding["hide"]
    assert plan(NODE, proc=None, cpus_default=64, cores_per_task=32, gpus_per_task=1).slots == 2
    # Binding no CPUs: as many as the GPUs allow, and never more than -n's default.
    assert plan(NODE, proc=None, cpus_default=64, gpus_per_task=2).slots == 2
    assert plan(NODE, proc=None, cpus_default=3, gpus_per_task=1).slots == 3
    plain = plan(NODE, proc=None, cpus_default=64)
    assert plain.slots == 64 and plain.default == {"slots": 1} and "cpus" not in plain.binding
    assert plain.binding["gpus"] == ["0", "1", "2", "3"] and not plain.binding["hide"]  # jsonl's gpus still work


def test_options_asking_for_more_than_the_node_has_are_usage_errors() -> None:
    with pytest.raises(UsageError, match=r"--cores-per-task 4: this farmer may use 2 CPUs \(0-1, affinity mask\)"):
        plan(LAPTOP, proc=None, cpus_default=2, cores_per_task=4)
    with pytest.raises(UsageError, match=r"--gpus-per-task 1: this farmer has no GPUs \(none found\)"):
        plan(LAPTOP, proc=None, cpus_default=2, gpus_per_task=1)
    with pytest.raises(UsageError, match="--gpus-per-task 5: this farmer has 4 GPUs"):
        plan(NODE, proc=None, cpus_default=64, gpus_per_task=5)


def test_a_request_too_big_for_the_node_says_why() -> None:
    pool = plan(NODE, proc=None, cpus_default=64, cores_per_task=1)
    assert pool.too_big({"slots": 1, "cores": 64, "gpus": 4}) is None
    assert "asks for 65 cores, and this farmer may use 64 CPUs" in (pool.too_big({"slots": 1, "cores": 65}) or "")
    assert "asks for 5 GPUs, and this farmer has 4 GPUs" in (pool.too_big({"slots": 1, "gpus": 5}) or "")
    assert pool.too_big({"slots": 999}) is None  # more than -n: fails when run (unavailable), not at start
    unbound = plan(LAPTOP, proc=None, cpus_default=2)
    assert unbound.too_big(unbound.request({"resources": {"cores": 8}})) is None  # slots, as before
    assert PoolResources.slots_only(2).too_big({"gpus": 9}) is None  # knows nothing of its node


def test_a_run_s_units_are_named_as_cpus_and_gpus() -> None:
    pool = plan(NODE, proc=None, cpus_default=64, cores_per_task=2, gpus_per_task=1)
    assert pool.placed({"slots": [0], "cores": [16, 17, 18, 40], "gpus": [1]}) == ("16-18,40", "1")
    assert PoolResources.slots_only(4).placed({"slots": [2]}) == ("", "")
    argument = pool.spawner_argument()
    assert argument["capacity"] == pool.capacity and argument["binding"]["gpus"] == ["0", "1", "2", "3"]
    assert PoolResources.slots_only(4).spawner_argument() == {"slots": 4}


def test_the_line_check_refuses_a_task_too_big_for_the_node_and_what_the_handler_refuses() -> None:
    check = line_check(JsonTaskList(), plan(LAPTOP, proc=None, cpus_default=2, cores_per_task=1))
    assert check is not None
    check('{"cmd": "x", "cores": 2}')
    with pytest.raises(ValueError, match="asks for 3 cores"):
        check('{"cmd": "x", "cores": 3}')
    with pytest.raises(ValueError, match="asks for 1 GPU, and this farmer has no GPUs"):
        check('{"cmd": "x", "gpus": 1}')
    with pytest.raises(ValueError, match="key 'cmd' is missing"):
        check('{"cores": 1}')
    assert line_check(ListTaskList(), plan(LAPTOP, proc=None, cpus_default=2)) is None  # nothing to check
