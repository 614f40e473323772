"""Surfaces of a trained scene: TSDF fusion of rendered depths and marching tetrahedra, block by block.

``extract`` runs ``mgs mesh`` (with its ``settings``) over the global ``scene_grid``; ``blocks`` fuses each
block's share of it from the ``depth_renders`` of the training views, with ``tsdf`` and ``marching``; ``picture``
draws the overview beside the mesh. The scores against a ground truth are evaluation's
(:mod:`momentum_gs.eval.geometry`).
"""
