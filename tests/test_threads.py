"""The config's ``threads``: a number is taken as it is, 0 (auto) is the physical cores this process may use
(its affinity, SMT siblings once, a cgroup's CPU quota), shared by the ``torchrun`` processes of the machine;
PyTorch's own ops take them on large views only, the C++ kernels always; the kernels' line says how many and
why."""

from __future__ import annotations

import os

import pytest
import torch

from momentum_gs.config import device, kernel_threads, load_config, threads_in_use, use_threads
from momentum_gs.errors import UserError
from momentum_gs.render.kernels import build


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """A fake machine: ``make(siblings, allowed, cpu_max=None, v1=None)`` writes a sysfs topology of logical
    CPUs (``siblings``: the core of each CPU), this process's affinity and a cgroup v2 ``cpu.max`` or v1
    (quota, period); torch's thread count and the launcher's variables are restored after."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr(device, "SYS_CPU", tmp_path / "cpu")
    monkeypatch.setattr(device, "CGROUP", tmp_path / "cgroup")

    def make(siblings: list[int], allowed: set[int], cpu_max: str | None = None, v1: tuple[int, int] | None = None):
        for cpu, core in enumerate(siblings):
            topology = tmp_path / "cpu" / f"cpu{cpu}" / "topology"
            topology.mkdir(parents=True)
            (topology / "physical_package_id").write_text("0\n")
            (topology / "core_id").write_text(f"{core}\n")
        (tmp_path / "cgroup" / "cpu").mkdir(parents=True)
        if cpu_max is not None:
            (tmp_path / "cgroup" / "cpu.max").write_text(cpu_max + "\n")
        if v1 is not None:
            (tmp_path / "cgroup" / "cpu" / "cpu.cfs_quota_us").write_text(f"{v1[0]}\n")
            (tmp_path / "cgroup" / "cpu" / "cpu.cfs_period_us").write_text(f"{v1[1]}\n")
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(allowed))

    before = torch.get_num_threads()
    yield make
    torch.set_num_threads(before)
    if build.build.cache_info().currsize and build.build().ops is not None:
        build.build().ops.set_kernel_threads(0, 0)  # the kernels follow torch's count again


def test_auto_is_the_physical_cores_this_process_may_use(machine):
    machine([0, 0, 1, 1, 2, 2, 3, 3], allowed={0, 1, 2, 3, 4, 5})  # 4 cores × 2 SMT threads; 3 cores allowed
    assert device.cores() == (3, "the 3 physical cores this process may use")
    assert use_threads(0, torch.device("cpu")) == 3
    assert threads_in_use() == "3 threads (threads=0: the 3 physical cores this process may use)"


def test_auto_stops_at_the_cgroup_quota(machine):
    machine([0, 1, 2, 3], allowed={0, 1, 2, 3}, cpu_max="250000 100000")  # 2.5 CPUs: 2 whole ones
    assert device.cores() == (2, "the cgroup's CPU quota (2 of 4 physical cores)")


@pytest.mark.parametrize("cpu_max, v1, count", [("max 100000", None, 4), (None, (50000, 100000), 1),
                                                (None, (-1, 100000), 4), ("500000 100000", None, 4)])
def test_a_quota_of_none_or_more_than_the_cores_leaves_the_cores(machine, cpu_max, v1, count):
    machine([0, 1, 2, 3], allowed={0, 1, 2, 3}, cpu_max=cpu_max, v1=v1)
    assert device.cores()[0] == count


def test_the_processes_of_a_machine_share_the_cores(machine):
    machine([0, 1, 2, 3, 4, 5, 6, 7], allowed=set(range(8)))
    assert device.auto_threads(3) == (2, "threads=0: the 8 physical cores this process may use, shared by 3 "
                                         "training processes")
    assert use_threads(0, torch.device("cpu"), processes=16) == 1
    assert use_threads(0, torch.device("cpu")) == 8


def test_a_number_an_omp_variable_and_a_gpu_device_are_taken_as_they_are(machine, monkeypatch):
    machine([0, 1], allowed={0, 1})
    assert use_threads(3, torch.device("cpu")) == 3
    assert threads_in_use() == "3 threads (threads=3 in the config)"
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert use_threads(0, torch.device("cpu")) == 3  # auto leaves a thread count the user set alone
    assert threads_in_use() == "3 threads (OMP_NUM_THREADS=3)"
    monkeypatch.delenv("OMP_NUM_THREADS")
    torch.set_num_threads(3)
    assert use_threads(0, torch.device("meta")) == 3  # not a CPU device: PyTorch's default stays
    torch.set_num_threads(1)
    assert threads_in_use() == "1 thread (torch.set_num_threads or PyTorch's default)"
    with pytest.raises(UserError, match="threads"):
        load_config(overrides=["threads=-1"])


def test_small_views_keep_pytorchs_ops_on_one_thread_and_the_kernels_on_all(machine):
    machine([0, 1, 2, 3], allowed={0, 1, 2, 3})
    small = device.TORCH_OPS_MIN_PIXELS - 1
    assert use_threads(0, torch.device("cpu"), pixels=small) == 4
    assert torch.get_num_threads() == 1 and kernel_threads() == 4
    assert threads_in_use() == (f"4 threads (threads=0: the 4 physical cores this process may use; PyTorch's ops "
                                f"on 1: views of {small} pixels, under {device.TORCH_OPS_MIN_PIXELS})")
    assert use_threads(2, torch.device("cpu"), pixels=small + 1) == 2 and torch.get_num_threads() == 2
    assert use_threads(3, torch.device("cpu")) == 3 and torch.get_num_threads() == 3  # views not known: all
    assert use_threads(0, torch.device("meta"), pixels=small) == 3  # not a CPU device: PyTorch's default stays


def test_the_kernels_take_their_count_and_follow_a_later_torch_count(machine):
    ops = build.build().ops
    if ops is None:
        pytest.skip(f"the C++ kernels did not build: {build.build().note}")
    machine([0, 1, 2], allowed={0, 1, 2})
    use_threads(0, torch.device("cpu"), pixels=100)
    build.use_kernels("auto")  # passes the count on, as the trainer does after use_threads
    assert (ops.kernel_thread_count(), torch.get_num_threads()) == (3, 1)
    torch.set_num_threads(2)  # a later choice of torch's count: the kernels follow it
    assert ops.kernel_thread_count() == 2 and kernel_threads() == 2
    assert threads_in_use() == "2 threads (torch.set_num_threads or PyTorch's default)"


def test_the_kernels_line_says_how_many_threads_and_why(machine):
    from momentum_gs.render.kernels import kernels_in_use

    machine([0, 1], allowed={0, 1})
    use_threads(0, torch.device("cpu"))
    line = kernels_in_use("cpu")
    if build.build().ops is not None:
        assert line.endswith("; 2 threads (threads=0: the 2 physical cores this process may use))"), line
