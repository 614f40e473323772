"""pycolmap's synthetic reconstruction (exact observations) and GCPs taken from its points, for the tests of the
control adjustment."""

from __future__ import annotations

import numpy as np

from momentum_gs.data.sfm.adjust import Anchor


def reconstruction(seed: int = 0):
    """pycolmap's synthetic scene (12 photos of 300 points, exact observations) and its true camera centres."""
    import pycolmap

    pycolmap.set_random_seed(seed)
    options = pycolmap.SyntheticDatasetOptions(
        num_rigs=1, num_frames_per_rig=12, num_points3D=300, camera_model_id=pycolmap.CameraModelId.SIMPLE_PINHOLE,
        camera_params=[1280.0, 512.0, 384.0], num_points2D_without_point3D=0)
    model = pycolmap.synthesize_dataset(options)
    return model, {model.image(i).name: model.image(i).projection_center() for i in model.reg_image_ids()}


SITE_SCALE = 0.08  # this scene is about 8 units across: a unit here is 12.5 m of a 100 m site


def anchors_of(model, count: int = 5) -> list[Anchor]:
    """``count`` of the model's points as GCPs at their true positions, marked where the model sees them, surveyed
    to 2 cm of a 100 m site."""
    out = []
    for k, pid in enumerate(sorted(model.points3D)[:count]):
        point = model.points3D[pid]
        marks = [(model.image(e.image_id).name, model.image(e.image_id).points2D[e.point2D_idx].xy.copy())
                 for e in point.track.elements]
        out.append(Anchor(f"g{k}", point.xyz.copy(), marks, np.full(3, 0.02 * SITE_SCALE)))
    return out
