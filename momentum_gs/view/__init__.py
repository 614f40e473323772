"""``mgs view`` and ``mgs train --viewer``: a local web viewer (viser) that renders a run with our renderer from
the browser's camera, shows the training cameras and the partition's cells, and switches blocks on and off.

:mod:`~momentum_gs.view.frames` holds the pure pieces (cameras, frames, cells), :mod:`~momentum_gs.view.sources`
what is rendered (a trained run, or a run while it trains), :mod:`~momentum_gs.view.levels` the levels of detail
of a run too large to draw whole (which :mod:`~momentum_gs.view.drawer` draws), :mod:`~momentum_gs.view.server`
the viser server and its render loop, with its :mod:`~momentum_gs.view.panel` of controls and the
:mod:`~momentum_gs.view.overlays` (frustums, cells) in the browser's scene; :mod:`~momentum_gs.view.serving` the
port check, viser's import and the wait until Ctrl-C.
"""
