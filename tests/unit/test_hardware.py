"""GPU and CPU discovery from each source, on faked environments and faked /sys and /proc trees."""

from __future__ import annotations

from pathlib import Path

import pytest

from mpifarmer.hardware import discover, node_gpus, usable_cpus


def pci(root: Path, address: str, vendor: str, pci_class: str, local: str | None = None) -> None:
    device = root / "bus" / "pci" / "devices" / address
    device.mkdir(parents=True)
    (device / "vendor").write_text(f"{vendor}\n")
    (device / "class").write_text(f"{pci_class}\n")
    if local is not None:
        (device / "local_cpulist").write_text(f"{local}\n")


@pytest.fixture
def nvidia_node(tmp_path: Path) -> Path:
    """Four NVIDIA GPUs (3D controllers), two per NUMA domain of 8 CPUs, listed out of bus order,
    beside a BMC's VGA adapter, an NVSwitch bridge and a network card that are no GPUs."""
    root = tmp_path / "sys"
    pci(root, "0000:c1:00.0", "0x10de", "0x030200", "8-15")
    pci(root, "0000:03:00.0", "0x10de", "0x030200", "0-7")
    pci(root, "0000:41:00.0", "0x10de", "0x030200", "0-7")
    pci(root, "0000:81:00.0", "0x10de", "0x030200", "8-15")
    pci(root, "0000:02:00.0", "0x1a03", "0x030000", "0-15")  # ASPEED BMC graphics
    pci(root, "0000:05:00.0", "0x10de", "0x068000", "0-7")  # NVSwitch
    pci(root, "0000:06:00.0", "0x15b3", "0x020700", "0-7")  # a network card
    return root


def cpus(*numbers: int):
    return lambda: set(numbers)


def test_the_node_s_gpus_are_its_nvidia_and_amd_display_devices_in_bus_order(nvidia_node: Path) -> None:
    found = node_gpus(nvidia_node)
    assert list(found) == ["0000:03:00.0", "0000:41:00.0", "0000:81:00.0", "0000:c1:00.0"]
    assert {vendor for vendor, _ in found.values()} == {"nvidia"}
    assert found["0000:81:00.0"][1] == frozenset(range(8, 16))


def test_gpus_from_the_node_when_nothing_names_them(nvidia_node: Path, tmp_path: Path) -> None:
    inventory = discover(None, {}, nvidia_node, tmp_path, cpus(*range(16)))
    assert [gpu.id for gpu in inventory.gpus] == ["0", "1", "2", "3"]
    assert inventory.vendor == "nvidia" and inventory.pci_order
    assert inventory.gpu_source == f"{nvidia_node / 'bus' / 'pci' / 'devices'}"
    assert [gpu.near for gpu in inventory.gpus] == [frozenset(range(8))] * 2 + [frozenset(range(8, 16))] * 2
    assert inventory.describe() == (f"16 CPUs 0-15 (affinity mask), 4 NVIDIA GPUs 0,1,2,3 "
                                    f"({nvidia_node / 'bus' / 'pci' / 'devices'})")


def test_the_option_wins_over_everything(nvidia_node: Path, tmp_path: Path) -> None:
    inventory = discover("2, 3", {"SLURM_STEP_GPUS": "0", "CUDA_VISIBLE_DEVICES": "0"}, nvidia_node, tmp_path,
                         cpus(0, 1))
    assert [gpu.id for gpu in inventory.gpus] == ["2", "3"] and inventory.gpu_source == "--gpus"
    assert inventory.gpus[0].near == frozenset(range(8, 16))  # the node's third GPU in bus order
    assert not inventory.pci_order
    for bad, why in (("", "names no GPU"), ("1,1", "names a GPU twice")):
        with pytest.raises(ValueError, match=why):
            discover(bad, {}, nvidia_node, tmp_path, cpus(0))


def test_slurm_s_step_gpus_come_before_the_job_s(tmp_path: Path) -> None:
    inventory = discover(None, {"SLURM_STEP_GPUS": "1,3", "SLURM_JOB_GPUS": "0,1,2,3"}, tmp_path / "no-sys",
                         tmp_path, cpus(0))
    assert [gpu.id for gpu in inventory.gpus] == ["1", "3"] and inventory.gpu_source == "SLURM_STEP_GPUS"
    inventory = discover(None, {"SLURM_JOB_GPUS": "0,2"}, tmp_path / "no-sys", tmp_path, cpus(0))
    assert [gpu.id for gpu in inventory.gpus] == ["0", "2"] and inventory.gpu_source == "SLURM_JOB_GPUS"


def test_gpus_slurm_renumbered_are_handed_out_as_the_runtime_sees_them(nvidia_node: Path, tmp_path: Path) -> None:
    # A job confined to the node's GPUs 2 and 3: CUDA numbers them 0 and 1 inside the job.
    environ = {"SLURM_STEP_GPUS": "2,3", "CUDA_VISIBLE_DEVICES": "0,1"}
    inventory = discover(None, environ, nvidia_node, tmp_path, cpus(*range(16)))
    assert [gpu.id for gpu in inventory.gpus] == ["0", "1"]
    assert inventory.gpu_source == "SLURM_STEP_GPUS, as CUDA_VISIBLE_DEVICES"
    assert [gpu.near for gpu in inventory.gpus] == [frozenset(range(8, 16))] * 2  # where GPUs 2 and 3 are


def test_cuda_and_rocr_variables_name_gpus_and_their_vendor(tmp_path: Path) -> None:
    no_sys = tmp_path / "no-sys"
    inventory = discover(None, {"CUDA_VISIBLE_DEVICES": "GPU-1a2b,GPU-3c4d"}, no_sys, tmp_path, cpus(0))
    assert [gpu.id for gpu in inventory.gpus] == ["GPU-1a2b", "GPU-3c4d"] and inventory.vendor == "nvidia"
    assert inventory.gpu_source == "CUDA_VISIBLE_DEVICES" and inventory.gpus[0].near is None
    inventory = discover(None, {"ROCR_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7"}, no_sys, tmp_path, cpus(0))
    assert len(inventory.gpus) == 8 and inventory.vendor == "amd" and inventory.gpu_source == "ROCR_VISIBLE_DEVICES"
    both = discover(None, {"CUDA_VISIBLE_DEVICES": "0", "ROCR_VISIBLE_DEVICES": "0"}, no_sys, tmp_path, cpus(0))
    assert both.vendor is None  # Slurm sets both on any GPU node


@pytest.mark.parametrize("value", ["", "NoDevFiles", "-1"])
def test_a_variable_that_says_no_device_means_none_and_the_node_is_not_asked(nvidia_node: Path, tmp_path: Path,
                                                                              value: str) -> None:
    inventory = discover(None, {"CUDA_VISIBLE_DEVICES": value}, nvidia_node, tmp_path, cpus(0))
    assert inventory.gpus == () and inventory.gpu_source.startswith("CUDA_VISIBLE_DEVICES is")


def test_amd_gpus_from_the_node(tmp_path: Path) -> None:
    root = tmp_path / "sys"
    for index, address in enumerate(["0000:c1:00.0", "0000:c6:00.0", "0000:c9:00.0", "0000:ce:00.0"]):
        pci(root, address, "0x1002", "0x038000", "0-15" if index < 2 else "16-31")
    inventory = discover(None, {}, root, tmp_path, cpus(*range(32)))
    assert [gpu.id for gpu in inventory.gpus] == ["0", "1", "2", "3"] and inventory.vendor == "amd"
    assert inventory.describe().endswith(f"4 AMD GPUs 0,1,2,3 ({root / 'bus' / 'pci' / 'devices'})")


def test_no_gpu_anywhere(tmp_path: Path) -> None:
    inventory = discover(None, {}, tmp_path / "no-sys", tmp_path, cpus(0, 1))
    assert inventory.gpus == () and inventory.vendor is None
    assert inventory.describe() == (f"2 CPUs 0-1 (affinity mask), no GPU (none found in "
                                    f"{tmp_path / 'no-sys' / 'bus' / 'pci' / 'devices'})")


def test_cpus_from_the_affinity_mask_else_proc_and_as_many_as_slurm_gave(tmp_path: Path) -> None:
    assert usable_cpus({}, tmp_path, cpus(5, 3, 4)) == ((3, 4, 5), "affinity mask")
    status = tmp_path / "self" / "status"
    status.parent.mkdir()
    status.write_text("Name:\tpython\nCpus_allowed:\tf0\nCpus_allowed_list:\t4-7\nMems_allowed:\t1\n")
    assert usable_cpus({}, tmp_path, None) == ((4, 5, 6, 7), f"{status}")
    trimmed, source = usable_cpus({"SLURM_CPUS_PER_TASK": "2"}, tmp_path, cpus(*range(8)))
    assert trimmed == (0, 1) and "SLURM_CPUS_PER_TASK" in source
    assert usable_cpus({"SLURM_CPUS_PER_TASK": "16"}, tmp_path, cpus(0, 1))[0] == (0, 1)  # never more than the mask
