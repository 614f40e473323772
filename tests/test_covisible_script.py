"""scripts/covisible_psnr.py's geometry: a pixel's surface point is covisible from a training camera that sees it
unhidden, and not from one it lies behind or where a nearer surface hides it."""

from __future__ import annotations

import torch

from tests.helpers.generated_city import look_at
from tests.helpers.script_module import load_script


def _script():
    return load_script("covisible_psnr")


def test_points_a_camera_sees_unhidden_are_covisible_and_others_not():
    script = _script()
    held_out = look_at([0.0, 0.0, 20.0], [0.0, 0.0, 0.0], 40, 30, 40.0)  # straight down onto the ground z = 0
    depth = torch.full((30, 40), 20.0)
    points = script.surface_points(held_out, depth)
    assert torch.allclose(points[..., 2], torch.zeros(30, 40, dtype=torch.float64), atol=1e-9)
    beside = look_at([3.0, 0.0, 20.0], [3.0, 0.0, 0.0], 40, 30, 40.0)  # 3 m east: sees most of that ground
    ground = torch.full((30, 40), 20.0)
    seen = script.seen_by(points, beside, ground, 0.05)
    assert 0.7 < seen.double().mean() < 0.95 and seen[:, 20].all() and not seen[:, 0].any()  # west edge out
    roof = torch.full((30, 40), 12.0)  # a surface 8 m above the ground hides it from that camera
    assert not script.seen_by(points, beside, roof, 0.05).any()
    below = look_at([0.0, 0.0, -5.0], [0.0, 0.0, -10.0], 40, 30, 40.0)  # looking away, under the ground
    assert not script.seen_by(points, below, ground, 0.05).any()
