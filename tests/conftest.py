"""Shared fixtures: a tiny synthetic scene (made once per session), a tiny training config, and a test run
with each set of CPU kernels. Functions and constants the tests share are in tests/helpers/, not here."""

from __future__ import annotations

from pathlib import Path

import pytest

from momentum_gs.config import load_config
from tests.helpers.brighton import DATA
from tests.helpers.tiny_training import TINY_OVERRIDES


SHARED_SESSION_FIXTURES = ("brighton_sfm",)  # a minute each: the files using one run on one worker


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    """For pytest-xdist's ``--dist loadgroup`` (`make test` runs two workers): each file's tests stay together on
    one worker, so that a module's fixture (a training, an SfM run) is made once; the files that use one of
    ``SHARED_SESSION_FIXTURES`` share a worker, so that it too is made once. Runs before xdist names the groups."""
    shared = {}
    for item in items:
        for name in SHARED_SESSION_FIXTURES:
            if name in getattr(item, "fixturenames", ()):
                shared.setdefault(item.path, name)
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(shared.get(item.path, item.path.stem)))


@pytest.fixture(params=["cpp", "torch"])
def kernels(request, monkeypatch):
    """Runs a test with the C++ kernels (momentum_gs/render/kernels/csrc) and with the PyTorch ops (the
    reference), through ``MOMENTUM_GS_KERNELS``; skips the C++ run where the kernels did not build."""
    from momentum_gs.render.kernels import build

    if request.param == "cpp" and build.build().ops is None:
        pytest.skip(f"the C++ kernels did not build: {build.build().note}")
    monkeypatch.setenv(build.KERNELS_VARIABLE, request.param)
    return request.param


@pytest.fixture(params=[1, 2, 3], ids=lambda n: f"{n}thread")
def kernel_threads(request):
    """Runs a test at 1, 2 and 3 of torch's intra-op threads (the C++ kernels' threads too), with every kernel's
    grain at its smallest (``split_small_work``, csrc/parallel.h), so that a test's small inputs are split over
    the threads as a large view's are; both restored after. A test of the PyTorch path alone (``kernels`` =
    torch) runs at 1 thread only: the kernels' threads are not what it tests."""
    import torch

    from momentum_gs.render.kernels import build

    params = getattr(request.node, "callspec", None)
    if request.param > 1 and params is not None and params.params.get("kernels") == "torch":
        pytest.skip("the PyTorch path: run at one thread")
    ops = build.build().ops
    previous = torch.get_num_threads(), ops is not None and ops.split_small_work(True)
    if ops is not None:
        ops.set_kernel_threads(0, 0)  # the kernels follow torch's count, whatever a trainer set before
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(previous[0])
    if ops is not None:
        ops.split_small_work(previous[1])


@pytest.fixture(scope="session")
def brighton_sfm(tmp_path_factory) -> tuple[Path, str]:
    """(the scene `mgs sfm` makes of brighton_beach's 18 drone photos, what it printed): made once per session
    (about a minute on 2 cores). Tests that write into the scene (an image cache) copy it first."""
    import contextlib
    import io

    from momentum_gs.cli import main

    if DATA is None:
        pytest.skip("brighton_beach dataset not found (set MGS_SHARED)")
    pytest.importorskip("pycolmap")
    out, printed = tmp_path_factory.mktemp("brighton_sfm") / "scene", io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["sfm", str(DATA / "input"), "--out", str(out), "--threads", "2"])
    assert code == 0, printed.getvalue()
    return out, printed.getvalue()


@pytest.fixture(scope="session")
def tiny_scene(tmp_path_factory) -> Path:
    """The ``tiny`` synthetic city in the Mill-19 layout (train/ + val/)."""
    from momentum_gs.data.synthetic import make_synthetic_scene

    return make_synthetic_scene(tmp_path_factory.mktemp("scene") / "tiny", "tiny", seed=0)


@pytest.fixture
def tiny_config(tiny_scene, tmp_path):
    """A config that trains the tiny scene for 24 steps into ``tmp_path/run``."""
    cfg = load_config(overrides=TINY_OVERRIDES)
    cfg.data.path = str(tiny_scene)
    cfg.out = str(tmp_path / "run")
    return cfg


@pytest.fixture
def block_config(tiny_config, tiny_scene, tmp_path):
    """The tiny config split into 2 blocks, 1 active at a time, teacher and block weighting on."""
    from momentum_gs.data.scene import load_scene
    from momentum_gs.partition import auto_partition

    scene = load_scene(tiny_config.data)
    partition = auto_partition(scene, 2)
    partition.save(tmp_path / "partition.npz")
    tiny_config.blocks.partition = str(tmp_path / "partition.npz")
    tiny_config.blocks.active = 1
    tiny_config.blocks.interval = 3
    tiny_config.optim.steps = 12  # per block: 24 global steps
    tiny_config.teacher.enabled = True
    tiny_config.weighting.enabled = True
    tiny_config.weighting.eval_interval = 4
    tiny_config.weighting.warmup = 4
    tiny_config.weighting.val_every = 3
    return tiny_config
