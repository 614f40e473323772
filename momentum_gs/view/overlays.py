"""What the viewer places in the browser's 3D scene over the rendered frames: the training cameras as frustums
(a click flies there) and the partition's cells as wireframe boxes, both in the colours of ``partition.png``."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from momentum_gs.data.up import estimate_up
from momentum_gs.view.frames import block_rgb, camera_pose, cell_boxes

FRUSTUM_SCALE = 0.04  # a frustum's size, as a fraction of the cameras' spread around their centre


def add_overlays(scene, source, on_click: Callable) -> tuple[list, list]:
    """(frustum handles, cell box and label handles) added to viser's ``scene`` for ``source``'s cameras and
    partition, with the scene's up direction set; ``on_click(client, camera)`` runs when a frustum is clicked."""
    cameras, partition = source.cameras, source.partition
    up = partition.up if partition is not None and partition.up is not None else estimate_up(cameras, False)
    if up is not None:
        scene.set_up_direction(tuple(float(v) for v in up))
    colours = [tuple(int(c) for c in rgb) for rgb in block_rgb(max(source.num_blocks, 1))]
    centres = np.stack([camera_pose(c)[0] for c in cameras]) if cameras else np.zeros((1, 3))
    extent = float(np.linalg.norm(centres - centres.mean(0), axis=1).max()) or 1.0
    frustums = []
    for i, camera in enumerate(cameras):
        position, wxyz, fov, aspect = camera_pose(camera)
        block = 0
        if partition is not None and partition.camera_block is not None:
            block = int(partition.camera_block[i])
        frustum = scene.add_camera_frustum(f"/cameras/{i}", fov=fov, aspect=aspect, scale=FRUSTUM_SCALE * extent,
                                           color=colours[block], wxyz=wxyz, position=position)
        frustum.on_click(lambda event, camera=camera: on_click(event.client, camera))
        frustums.append(frustum)
    boxes = []
    if partition is not None:
        for b, (centre, size, wxyz) in enumerate(cell_boxes(partition)):
            boxes.append(scene.add_box(f"/cells/{b}", color=colours[b], dimensions=size, wireframe=True,
                                       wxyz=wxyz, position=centre))
            boxes.append(scene.add_label(f"/cells/{b}/label", f"block {b}", position=(0.0, 0.0, 0.0)))
    return frustums, boxes
