"""A trained run out of the program. ``formats``: the table of ``mgs export``'s formats, each with its writer:
the standard 3DGS PLY (``standard_ply``), ``.splat`` (``splat``), ``.spz`` (``spz``), a web page and SOG
(``web``), levels of detail in tiles (``tiles/``) and the Scaffold-GS layout (``scaffold``); ``refine``: the
baked Gaussians trained further; ``distill`` and ``student``: distillation into a compact student; ``run``:
what the commands call. The baking itself is :func:`momentum_gs.model.standard.bake`."""
