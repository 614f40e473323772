"""The viewer's pure pieces: the browser's camera as ours and back, one frame in a render mode, the frame
sizes of progressive rendering, and the partition's cells as boxes in the world."""

from __future__ import annotations

import math

import numpy as np
import torch

from momentum_gs.data.camera import Camera
from momentum_gs.data.colmap import qvec_to_rotmat, rotmat_to_qvec
from momentum_gs.eval.evaluate import depth_picture, normal_picture
from momentum_gs.model.gaussian_scene import render_view
from momentum_gs.partition.contraction import uncontract

MODES = ("rgb", "depth", "normal")  # what a frame shows: the image, or one of the render's extra maps


def viewer_camera(position, wxyz, fov: float, width: int, height: int) -> Camera:
    """Our camera for the browser's view: viser's ``position`` [3] and ``wxyz`` [4] are the camera-to-world
    translation and rotation in OpenCV axes (x right, y down, z forward), ``fov`` the vertical field of view
    in radians; square pixels, the principal point at the image centre."""
    R = qvec_to_rotmat(wxyz)
    world_to_cam = np.eye(4)
    world_to_cam[:3, :3] = R.T
    world_to_cam[:3, 3] = -R.T @ np.asarray(position, np.float64)
    focal = height / 2 / math.tan(fov / 2)
    K = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]])
    return Camera(name="viewer", width=int(width), height=int(height), K=torch.tensor(K, dtype=torch.float32),
                  world_to_cam=torch.tensor(world_to_cam, dtype=torch.float32))


def camera_pose(camera: Camera) -> tuple[np.ndarray, np.ndarray, float, float]:
    """(position [3], wxyz [4], vertical fov in radians, aspect width/height) of one of our cameras, as viser
    places a frustum or the browser's camera."""
    world_to_cam = camera.world_to_cam.double().cpu().numpy()
    R = world_to_cam[:3, :3].T
    position = -R @ world_to_cam[:3, 3]
    fov = 2 * math.atan(camera.height / 2 / float(camera.K[1, 1]))
    return position, rotmat_to_qvec(R), fov, camera.width / camera.height


def frame_size(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """The canvas size scaled down (keeping its aspect) to at most ``max_pixels`` pixels, at least 8×8."""
    scale = min(1.0, math.sqrt(max_pixels / max(width * height, 1)))
    return max(8, round(width * scale)), max(8, round(height * scale))


@torch.no_grad()
def render_frame(parts, appearance, camera: Camera, render_cfg, mode: str = "rgb") -> tuple[np.ndarray, int]:
    """([H, W, 3] uint8 RGB frame, Gaussians drawn) of ``parts`` (a list of (anchors, decoder)) from ``camera``
    with the mean appearance code. ``mode`` "depth" and "normal" show the pictures of ``mgs eval --maps``
    (:func:`~momentum_gs.eval.evaluate.depth_picture`, :func:`~momentum_gs.eval.evaluate.normal_picture`).
    No parts: the background colour alone."""
    if not parts:
        colour = np.clip(np.asarray(render_cfg.background) * 255, 0, 255).round().astype(np.uint8)
        return np.broadcast_to(colour, (camera.height, camera.width, 3)).copy(), 0
    extras = () if mode == "rgb" else (mode,)
    view = render_view(parts, camera, render_cfg, appearance, None, extras=extras)
    if mode == "depth":
        return depth_picture(view.output), view.num_gaussians
    if mode == "normal":
        return normal_picture(view.output), view.num_gaussians
    return view.output.image.clamp(0, 1).mul(255).round().byte().cpu().numpy(), view.num_gaussians


def cell_boxes(partition) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per block: (centre [3] world, size [3] along the grid axes, wxyz [4] grid → world rotation) of its cell
    clipped to the scene box (the cells' outer parts reach to infinity in contracted space)."""
    rotation = rotmat_to_qvec(partition.rotation.T)
    boxes = []
    for b in range(partition.num_blocks):
        lo, hi = partition.cell_bounds(b)
        corners = uncontract(np.clip(np.stack([lo, hi]), 0.25, 0.75), partition.box_min, partition.box_max)
        boxes.append((partition.rotation.T @ corners.mean(0), corners[1] - corners[0], rotation))
    return boxes


def block_rgb(n: int) -> np.ndarray:
    """[n, 3] uint8 RGB colours of the blocks, the same as ``partition.png``'s."""
    from momentum_gs.partition.draw import block_colors

    return block_colors(n)[:, ::-1].copy()
