"""The viewer's pure pieces: the browser's camera as ours and back, one frame in a render mode, the frame
sizes of progressive rendering, and the partition's cells as boxes in the world."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from momentum_gs.data.camera import Camera
from momentum_gs.data.colmap.model import qvec_to_rotmat, rotmat_to_qvec
from momentum_gs.draw import distinct_colors
from momentum_gs.eval.evaluate import depth_picture, normal_picture
from momentum_gs.model.gaussian_scene import decode_parts, gaussian_tensors, rasterize
from momentum_gs.model.standard import eval_sh
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


FAR = 1e9  # the depth sent for a pixel the scene does not cover: every overlay is in front of it


@dataclass(frozen=True)
class FrameSettings:
    """What the viewer's panel sets for a frame: the render mode, the background colour (RGB in [0, 1]; None:
    the run's) and the depth mode's near and far (None: the 2nd and 98th percentiles of the frame)."""

    mode: str = "rgb"
    background: tuple[float, float, float] | None = None
    near: float | None = None
    far: float | None = None


@torch.no_grad()
def render_frame(parts, appearance, camera: Camera, render_cfg, settings: FrameSettings | str = "rgb",
                 with_depth: bool = True, coarse=()) -> tuple[np.ndarray, int, np.ndarray | None]:
    """([H, W, 3] uint8 RGB frame, Gaussians drawn, [H, W] float32 camera-space depth or None) of ``parts`` (a
    list of (anchors, decoder)) from ``camera`` with the mean appearance code, and of ``coarse`` (standard
    Gaussians on the parts' device: the coarser levels of blocks not decoded, :mod:`momentum_gs.view.levels`).
    The depth (``FAR`` where the scene covers at most half a pixel) lets the browser hide the overlays behind
    the scene. ``mode`` "depth" and "normal" show the pictures of ``mgs eval --maps``
    (:func:`~momentum_gs.eval.evaluate.depth_picture`, :func:`~momentum_gs.eval.evaluate.normal_picture`);
    ``settings`` may be a mode alone. Nothing to draw, or not ``with_depth``: no depth (and none rendered unless
    the mode shows it); nothing to draw: the background colour."""
    if isinstance(settings, str):
        settings = FrameSettings(settings)
    if settings.background is not None:
        render_cfg = replace(render_cfg, background=list(settings.background))
    if not parts and not coarse:
        colour = np.clip(np.asarray(render_cfg.background) * 255, 0, 255).round().astype(np.uint8)
        return np.broadcast_to(colour, (camera.height, camera.width, 3)).copy(), 0, None
    extras = (("depth",) if with_depth or settings.mode == "depth" else ()) + (
        ("normal",) if settings.mode == "normal" else ())
    camera = camera.to(parts[0][0].positions.device if parts else coarse[0].means.device)
    tensors = frame_gaussians(parts, coarse, appearance, camera, render_cfg)
    output, depth = rasterize(tensors, camera, render_cfg, extras=extras), None
    if with_depth:
        covered = (output.alpha[..., 0] > 0.5).detach().cpu().numpy()
        depth = np.where(covered, output.normalised_depth()[..., 0].detach().cpu().numpy(), FAR).astype(np.float32)
    if settings.mode == "depth":
        image = depth_picture(output, settings.near, settings.far)
    elif settings.mode == "normal":
        image = normal_picture(output)
    else:
        image = output.image.clamp(0, 1).mul(255).round().byte().cpu().numpy()
    return image, int(tensors[0].shape[0]), depth


def frame_gaussians(parts, coarse, appearance, camera: Camera, render_cfg) -> list[torch.Tensor]:
    """The means, quats, scales, opacities and colours (:func:`~momentum_gs.model.gaussian_scene.rasterize`'s
    tensors) of ``parts`` decoded from ``camera`` and of the standard Gaussians ``coarse`` with their colours
    seen from it, all together (``camera`` on their device)."""
    groups = [gaussian_tensors(decode_parts(parts, camera, render_cfg, appearance))] if parts else []
    for g in coarse:
        dirs = torch.nn.functional.normalize(g.means - camera.center.to(g.means), dim=-1)
        groups.append([g.means, g.quats, g.scales, g.opacities, eval_sh(g.sh, dirs)])
    return groups[0] if len(groups) == 1 else [torch.cat(ts) for ts in zip(*groups)]


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
    return distinct_colors(n)[:, ::-1].copy()
