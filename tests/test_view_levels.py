"""The viewer's levels of detail (view/levels.py, view/drawer.py): which level each block gets (near the camera
the finest, far away the coarsest, within the budget), the levels built from a block, and the viewer's frames
with levels on a generated city: fewer Gaussians on a far view, the same frame on a near one."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from momentum_gs.view.drawer import FrameDrawer, LevelCache
from momentum_gs.view.frames import render_frame
from momentum_gs.view.levels import (BlockLevels, FrameBudget, block_views, build_levels, choose_levels, in_view,
                                     levels_needed)
from tests.helpers.generated_city import GeneratedCity, look_at


def _block(x: float, counts=(40_000, 10_000, 2_500, 625), errors=(0.0, 0.05, 0.2, 0.8)) -> BlockLevels:
    """A block of levels (no Gaussians: the choice reads only counts, errors and the box) in a unit box at x."""
    return BlockLevels([None] * len(counts), list(counts), list(errors), np.array([[x, -0.5, 0.0], [x + 1, 0.5, 1.0]]))


def _camera():
    """At the origin, 1.7 units up, looking along +x; 100 px focal length."""
    return look_at((-1.0, 0.0, 0.5), (10.0, 0.0, 0.5), 160, 120, 100.0)


def test_near_blocks_get_the_finest_level_far_ones_the_coarsest_and_the_budget_holds():
    camera = _camera()
    blocks = {0: _block(0.0), 1: _block(30.0), 2: _block(3000.0), 3: _block(-20.0)}  # 3 is behind the camera
    chosen = choose_levels(blocks, camera, budget=10**9)
    # error · focal / distance: block 0, 1 unit away, shows even level 1 at 5 px; block 1, 31 units away, shows
    # level 3 at 2.6 px and level 2 at 0.65 px, under 1 px
    assert chosen == {0: 0, 1: 2, 2: 3, 3: None}
    assert in_view(blocks[0].box, camera) and not in_view(blocks[3].box, camera)
    # a budget for less: the block whose error shows most is refined first, and the total stays within it
    tight = choose_levels(blocks, camera, budget=15_000)
    drawn = sum(blocks[b].counts[level] for b, level in tight.items() if level is not None)
    assert tight[0] == 1 and tight[2] == 3 and drawn <= 15_000
    # no budget at all: every block in view at its coarsest, even beyond it
    assert choose_levels(blocks, camera, budget=0) == {0: 3, 1: 3, 2: 3, 3: None}
    # a looser error in pixels takes coarser levels
    assert choose_levels(blocks, camera, budget=10**9, pixel_error=40.0)[0] == 2


def test_the_budget_follows_the_measured_frames():
    budget = FrameBudget(0.1, rate=1e-6)
    assert budget.gaussians == pytest.approx(100_000, abs=1)
    for _ in range(30):
        budget.measured(0.2, 100_000)  # twice as slow as guessed
    assert budget.gaussians == pytest.approx(50_000, rel=0.01)
    budget.measured(5.0, 10)  # too few Gaussians to say anything
    assert budget.gaussians == pytest.approx(50_000, rel=0.01)


@pytest.fixture(scope="module")
def city() -> GeneratedCity:
    torch.set_num_threads(1)  # tiny renders on a shared machine: threads only wait for each other
    return GeneratedCity(32_000, side=2, block_size=10.0)


def test_a_block_levels_are_merges_of_its_baked_gaussians(city):
    anchors, decoder = city.parts((0,))[0]
    views = block_views(city.cameras, np.array([[0, 0, -1], [10, 10, 1.0]]))
    assert 0 < len(views) <= 16 and all(in_view(np.array([[0, 0, -1], [10, 10, 1.0]]), c) for c in views)
    levels = build_levels(anchors, decoder, None, city.cameras, city.cfg.render)
    assert levels.gaussians[0] is None and levels.counts[0] <= anchors.num_anchors * anchors.n_offsets
    assert all(levels.counts[i + 1] <= max(1024, -(-levels.counts[i] // 4)) for i in range(levels.coarsest))
    assert levels.coarsest >= 2 and levels.counts[-1] <= 1024
    assert levels.errors[0] == 0 and all(np.diff(levels.errors) > 0)
    for g in levels.gaussians[1:]:
        assert len(g) in levels.counts
        assert (g.means.numpy() >= levels.box[0] - 1e-6).all() and (g.means.numpy() <= levels.box[1] + 1e-6).all()
    centres = anchors.child_positions().detach().reshape(-1, 3).numpy()
    assert (centres >= levels.box[0]).all() and (centres <= levels.box[1]).all()


def test_the_viewer_draws_fewer_gaussians_far_away_and_the_same_frame_near(city):
    blocks = range(city.num_blocks)
    drawer = FrameDrawer(city, lod=True, background=False)
    far = look_at((10.0, -60.0, 40.0), (10.0, 10.0, 0.0), 160, 120, 150.0)
    whole, n_whole, _ = render_frame(city.parts(blocks), None, far, city.cfg.render, with_depth=False)
    image, n_levels, _ = drawer.render(blocks, far, "rgb", False, full=False)
    assert set(drawer.chosen.values()) <= {1, 2, 3, 4} and n_levels < n_whole / 3
    psnr = 10 * np.log10(255**2 / np.mean((whole.astype(float) - image) ** 2))
    assert psnr > 30, psnr  # measured 40 dB: the far city looks the same
    assert drawer.text.startswith("levels (L0 the finest): b0 L") and "/" in drawer.text
    # from inside block 0 at head height: every block is near enough to be drawn whole, the frame of no levels
    near = look_at((5.0, 5.0, 1.5), (8.0, 8.0, 0.0), 160, 120, 150.0)
    image, n_levels, depth = drawer.render(blocks, near, "rgb", True, full=True)
    whole, n_whole, whole_depth = render_frame(city.parts(blocks), None, near, city.cfg.render)
    assert set(drawer.chosen.values()) <= {0, None} and 0 in drawer.chosen.values() and n_levels <= n_whole
    assert np.array_equal(image, whole) and np.array_equal(depth, whole_depth)
    # a frame budget too small for anything finer: every block in view at its coarsest
    starved = FrameDrawer(city, lod=True, frame_time=1e-9, background=False)
    starved.render(blocks, near, "rgb", False, full=False)
    assert all(level == starved.cache.levels[b].coarsest for b, level in starved.chosen.items() if level is not None)


def test_levels_are_built_in_the_background_and_the_block_is_drawn_whole_meanwhile(city):
    cache = LevelCache(city)
    try:
        assert cache.get(1) is None  # asked for: built in another thread
        assert cache.wait([1, 2], timeout=120)
        assert cache.get(1).coarsest >= 1 and set(cache.levels) == {1, 2}
    finally:
        cache.close()
    assert not cache._thread.is_alive()
    drawer = FrameDrawer(city, lod=True)
    try:
        drawer.render([0], look_at((5.0, -40.0, 30.0), (5.0, 5.0, 0.0), 64, 48, 60.0), "rgb", False, full=False)
        assert drawer.chosen == {0: 0} and drawer.text == "levels (L0 the finest): b0 whole (levels being built)"
    finally:
        drawer.close()


def test_levels_are_on_by_default_only_for_a_run_over_the_budget(city):
    assert levels_needed(city, frame_time=0.001) and not levels_needed(city, frame_time=100.0)


@pytest.mark.skipif(not all(importlib.util.find_spec(n) for n in ("viser", "websocket")), reason="needs viser")
def test_the_viewer_takes_the_drawer_and_closes_it(city):
    from momentum_gs.view.server import Viewer
    from tests.helpers.browser import free_port

    drawer = FrameDrawer(city, lod=True)
    viewer = Viewer(city, "127.0.0.1", free_port(), log=lambda line: None, drawer=drawer)
    try:
        assert viewer.drawer is drawer and drawer.cache.get(0) is None
    finally:
        viewer.close()
    assert drawer.cache._thread is None or not drawer.cache._thread.is_alive()


def test_mgs_view_offers_the_levels_and_checks_the_frame_time(capsys):
    from momentum_gs.cli import main

    assert main(["view", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--lod, --no-lod" in out and "--frame-time" in out
    assert main(["view", "run", "--frame-time", "0"]) == 2
    assert "argument --frame-time: must be in [0.001, 60], got '0'" in capsys.readouterr().err
