"""A run's units on the hardware: CPU lists, and the environment a bound run gets."""

from __future__ import annotations

import pytest

from mpifarmer.scheduling.binding import cpulist, parse_cpulist, run_environment, run_resources


@pytest.mark.parametrize(("cpus", "text"), [
    ([0], "0"), ([0, 1, 2, 3], "0-3"), ([0, 1, 2, 5], "0-2,5"), ([3, 1, 2, 9, 10, 64], "1-3,9-10,64"), ([], ""),
])
def test_cpu_lists_are_the_kernel_s_format(cpus: list[int], text: str) -> None:
    assert cpulist(cpus) == text
    assert parse_cpulist(text) == sorted(cpus)


def test_parsing_takes_strides_blanks_and_a_newline_and_refuses_nonsense() -> None:
    assert parse_cpulist("0-7:2\n") == [0, 2, 4, 6]
    assert parse_cpulist(" 1, 3-4 ") == [1, 3, 4]
    for bad in ("a", "3-1", "-1", "0-3:0"):
        with pytest.raises(ValueError):
            parse_cpulist(bad)


BINDING = {"cpus": [4, 5, 6, 7, 12, 13], "gpus": ["0", "1", "2", "3"], "vendor": "nvidia", "hide": True,
           "order": False}


def test_a_bound_run_gets_its_cpus_and_thread_count_unless_it_has_one() -> None:
    cpus, extra = run_environment(BINDING, {"slots": [0], "cores": [0, 1, 4]}, {})
    assert cpus == [4, 5, 12]
    assert extra["MPIFARMER_CPUS"] == "4-5,12" and extra["OMP_NUM_THREADS"] == "3"
    _, extra = run_environment(BINDING, {"cores": [2]}, {"OMP_NUM_THREADS": "8"})
    assert "OMP_NUM_THREADS" not in extra and extra["MPIFARMER_CPUS"] == "6"


def test_a_run_s_gpus_go_into_every_runtime_s_variable() -> None:
    cpus, extra = run_environment(BINDING, {"cores": [0], "gpus": [3, 1]}, {"CUDA_VISIBLE_DEVICES": "0,1,2,3"})
    assert cpus == [4]
    assert {name: extra[name] for name in ("MPIFARMER_GPUS", "CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES",
                                           "ROCR_VISIBLE_DEVICES", "ZE_AFFINITY_MASK")} == dict.fromkeys(
        ("MPIFARMER_GPUS", "CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES",
         "ZE_AFFINITY_MASK"), "3,1")
    assert run_resources(BINDING, {"cores": [5, 0], "gpus": [3, 1]}) == ([4, 13], ["3", "1"])


def test_on_amd_hip_counts_what_rocr_leaves_from_zero() -> None:
    _, extra = run_environment({**BINDING, "vendor": "amd"}, {"gpus": [2, 3]}, {})
    assert extra["ROCR_VISIBLE_DEVICES"] == "2,3" and extra["MPIFARMER_GPUS"] == "2,3"
    assert extra["HIP_VISIBLE_DEVICES"] == extra["CUDA_VISIBLE_DEVICES"] == "0,1"


def test_a_run_given_no_gpu_sees_none_when_the_farmer_hands_them_out() -> None:
    _, extra = run_environment(BINDING, {"cores": [0]}, {"CUDA_VISIBLE_DEVICES": "0,1,2,3"})
    assert extra["CUDA_VISIBLE_DEVICES"] == extra["ROCR_VISIBLE_DEVICES"] == extra["MPIFARMER_GPUS"] == ""
    _, extra = run_environment({**BINDING, "hide": False}, {"cores": [0]}, {})
    assert "CUDA_VISIBLE_DEVICES" not in extra  # the farmer's environment as it is


def test_gpus_numbered_in_pci_order_tell_cuda_so() -> None:
    _, extra = run_environment({**BINDING, "order": True}, {"gpus": [0]}, {})
    assert extra["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    _, extra = run_environment({**BINDING, "order": True}, {"gpus": [0]}, {"CUDA_DEVICE_ORDER": "FASTEST_FIRST"})
    assert "CUDA_DEVICE_ORDER" not in extra


def test_a_pool_that_binds_nothing_adds_nothing() -> None:
    assert run_environment({}, {"slots": [3]}, {}) == ([], {})
