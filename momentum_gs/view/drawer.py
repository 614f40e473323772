"""The viewer's frames of a source's blocks: every block whole, or each at its level of detail
(:mod:`momentum_gs.view.levels`), the levels built once per block in a background thread."""

from __future__ import annotations

import threading
import time

from momentum_gs.errors import one_line
from momentum_gs.view.frames import FrameSettings, render_frame
from momentum_gs.view.levels import (FRAME_TIME, PIXEL_ERROR, REST_FACTOR, BlockLevels, FrameBudget, build_levels,
                                     choose_levels, placed_gaussians)


class LevelCache:
    """Each block's levels, built once, when first asked for: in a background thread (``background``; until
    they are ready the block is drawn whole and :meth:`get` gives None) or at once in the caller's."""

    def __init__(self, source, background: bool = True):
        self.source, self.background = source, background
        self.levels: dict[int, BlockLevels] = {}
        self.failure: str | None = None  # the first build that failed, in one line
        self._wanted: list[int] = []
        self._changed = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None

    def get(self, b: int) -> BlockLevels | None:
        """Block ``b``'s levels, or None while they are being built in the background."""
        with self._changed:
            if b in self.levels:
                return self.levels[b]
            if self.background:
                if b not in self._wanted:
                    self._wanted.append(b)
                    self._changed.notify_all()
                if self._thread is None:
                    self._thread = threading.Thread(target=self._loop, name="mgs-levels", daemon=True)
                    self._thread.start()
                return None
        levels = self._build(b)
        with self._changed:
            self.levels[b] = levels
        return levels

    def wait(self, blocks, timeout: float | None = None) -> bool:
        """Wait until the levels of ``blocks`` are ready (asking for them); False when ``timeout`` ran out."""
        for b in blocks:
            self.get(b)
        with self._changed:
            return self._changed.wait_for(lambda: all(b in self.levels for b in blocks), timeout)

    def _loop(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._wanted or self._stop)
                if self._stop:
                    return
                b = self._wanted[0]
            levels = self._build(b)
            with self._changed:
                self.levels[b] = levels
                self._wanted.remove(b)
                self._changed.notify_all()

    def _build(self, b: int) -> BlockLevels:
        """Block ``b``'s levels; a build that fails is reported (:attr:`failure`) and the block drawn whole."""
        source = self.source
        try:
            (anchors, decoder), = source.parts((b,))
            return build_levels(anchors, decoder, source.appearance, source.cameras, source.cfg.render)
        except Exception as exc:  # the viewer goes on without this block's levels
            self.failure = self.failure or f"the levels of block {b} failed ({one_line(exc, 200)}); it is drawn whole"
            return BlockLevels([None], [placed_gaussians(source.parts((b,)))], [0.0], None)

    def close(self) -> None:
        """Stop the background thread (after the block it is building)."""
        with self._changed:
            self._stop = True
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=60)


class FrameDrawer:
    """The viewer's frames of ``source``'s blocks: each block whole, or with ``lod`` each at the level the
    frame's budget and its screen-space error allow (for a source whose model does not change: a trained run).

    ``frame_time``: seconds a moving camera's frame aims at (the resting camera's full frame may take
    ``REST_FACTOR`` times as long); ``pixel_error``: the screen-space error a level may show, in pixels;
    ``background``: levels built in a background thread (else at once, when first needed)."""

    def __init__(self, source, lod: bool = False, frame_time: float = FRAME_TIME, pixel_error: float = PIXEL_ERROR,
                 background: bool = True):
        self.source, self.pixel_error = source, pixel_error
        self.cache = LevelCache(source, background) if lod else None
        self.budgets = {False: FrameBudget(frame_time), True: FrameBudget(frame_time * REST_FACTOR)}
        self.chosen: dict[int, int | None] = {}  # the last frame's levels per block (None: out of view)
        self.text = ""  # the last frame's levels, in words (empty without levels)

    def render(self, blocks, camera, settings: FrameSettings | str = "rgb", with_depth: bool = True,
               full: bool = True):
        """(image, Gaussians drawn, depth) of ``blocks`` from ``camera``, as
        :func:`~momentum_gs.view.frames.render_frame`; ``full``: the resting camera's frame (its budget)."""
        source = self.source
        if self.cache is None:
            return render_frame(source.parts(blocks), source.appearance, camera, source.cfg.render, settings,
                                with_depth)
        budget = self.budgets[full]
        self.chosen = self.choose(blocks, camera, budget.gaussians)
        whole = [b for b, level in self.chosen.items() if level == 0]
        coarse = [self.cache.levels[b].gaussians[level] for b, level in self.chosen.items() if level]
        started = time.perf_counter()
        frame = render_frame(source.parts(whole), source.appearance, camera, source.cfg.render, settings,
                             with_depth, coarse)
        budget.measured(time.perf_counter() - started, frame[1])
        self.text = self.describe()
        return frame

    def choose(self, blocks, camera, budget: int) -> dict[int, int | None]:
        """block → level of ``blocks`` from ``camera`` within ``budget`` Gaussians; a block whose levels are not
        ready is drawn whole (level 0) and its Gaussians are taken from the budget first."""
        ready, building = {}, []
        for b in sorted(blocks):
            levels = self.cache.get(b)
            if levels is None:
                building.append(b)
            else:
                ready[b] = levels
        spare = budget - sum(placed_gaussians(self.source.parts((b,))) for b in building)
        chosen = choose_levels(ready, camera, max(spare, 0), self.pixel_error)
        return {**chosen, **{b: 0 for b in building}}

    def describe(self) -> str:
        """The last frame's levels in a line of Markdown: ``b3 L2/4`` is block 3 at level 2 of 0 (the finest) to 4."""
        words = []
        for b, level in sorted(self.chosen.items()):
            levels = self.cache.levels.get(b)
            if levels is None:
                words.append(f"b{b} whole (levels being built)")
            else:
                words.append(f"b{b} out of view" if level is None else f"b{b} L{level}/{levels.coarsest}")
        failure = f"; {self.cache.failure}" if self.cache.failure else ""
        return "levels (L0 the finest): " + (", ".join(words) or "no block") + failure

    def close(self) -> None:
        """Stop building levels."""
        if self.cache is not None:
            self.cache.close()
