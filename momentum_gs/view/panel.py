"""The viewer's control panel in the browser: status and frame lines, render mode, resolution, background, depth
range, what to show, a switch per block, and the pause of a run that trains. A control that changes the picture
bumps :attr:`ViewerPanel.settings`, so every browser gets a new frame."""

from __future__ import annotations

import numpy as np

from momentum_gs.view.frames import MODES, FrameSettings


class ViewerPanel:
    """The panel of :class:`~momentum_gs.view.server.Viewer`, which sets ``server`` (viser's) and ``source``
    before :meth:`_build_gui`, and ``frustums`` and ``boxes`` (the overlays the panel shows or hides)."""

    settings: int  # bumped by every control change: a new frame for everyone

    def _build_gui(self) -> None:
        """The panel: status, render mode, resolution, what to show, a switch per block (and pause)."""
        gui = self.server.gui
        gui.configure_theme(show_share_button=False, control_width="medium")  # sharing would go online
        self.status = gui.add_markdown(self.source.status())
        self.frame_text = gui.add_markdown("no frame yet")
        self.mode = gui.add_dropdown("Render", MODES, initial_value="rgb")
        self.resolution = gui.add_slider("Resolution", min=0.1, max=1.0, step=0.05, initial_value=1.0)
        background = np.clip(np.asarray(self.source.cfg.render.background, np.float64) * 255, 0, 255).round()
        self.background = gui.add_rgb("Background", initial_value=tuple(int(c) for c in background))
        with gui.add_folder("Depth range", expand_by_default=False):  # 0, 0: each frame's 2nd-98th percentile
            self.near = gui.add_number("Near", initial_value=0.0, min=0.0, step=0.01)
            self.far = gui.add_number("Far", initial_value=0.0, min=0.0, step=0.01)
        self.show_cameras = gui.add_checkbox("Cameras", initial_value=True)
        self.show_cells = gui.add_checkbox("Cells", initial_value=self.source.partition is not None)
        for handle in (self.mode, self.resolution, self.background, self.near, self.far):
            handle.on_update(lambda _: self._changed())
        self.show_cameras.on_update(lambda _: self._set_visible(self.frustums, self.show_cameras.value))
        self.show_cells.on_update(lambda _: self._set_visible(self.boxes, self.show_cells.value))
        self.block_boxes = []
        with gui.add_folder("Blocks"):
            for b in range(self.source.num_blocks):
                box = gui.add_checkbox(f"block {b}", initial_value=True)
                box.on_update(lambda _: self._changed())
                self.block_boxes.append(box)
            gui.add_button("All blocks").on_click(lambda _: self._all_blocks())
        self.pause = None
        if hasattr(self.source, "paused"):
            self.pause = gui.add_button("Pause")
            self.pause.on_click(lambda _: self._toggle_pause())

    def _set_visible(self, handles, visible: bool) -> None:
        for handle in handles:
            handle.visible = visible

    def _changed(self) -> None:
        self.settings += 1

    def _all_blocks(self) -> None:
        for box in self.block_boxes:
            box.value = True
        self._changed()

    def _toggle_pause(self) -> None:
        paused = self.source.paused
        if paused.is_set():
            paused.clear()
            self.pause.label = "Pause"
        else:
            paused.set()
            self.pause.label = "Resume"

    @property
    def frame_settings(self) -> FrameSettings:
        """The panel's render mode, background and depth range."""
        near, far = float(self.near.value), float(self.far.value)
        return FrameSettings(self.mode.value, tuple(c / 255 for c in self.background.value),
                             near if far > near else None, far if far > near else None)

    @property
    def overlays_shown(self) -> bool:
        """Whether frustums or cells are drawn over the frames (each frame's depth is then rendered and sent)."""
        return bool(self.show_cameras.value or (self.show_cells.value and self.boxes))

    @property
    def blocks(self) -> tuple[int, ...]:
        """The blocks switched on."""
        return tuple(b for b, box in enumerate(self.block_boxes) if box.value)
