"""Camera paths for fly-through videos: through the training cameras, an orbit, or nerfstudio's JSON.

A :class:`CameraPath` holds one pose and one vertical field of view per video frame, with the principal
point at the image centre and square pixels, which is exactly what nerfstudio's camera-path file stores;
so any path can be written as such a file, edited, and read back (:mod:`momentum_gs.eval.camera_path_json`).

Through the training cameras, the key poses are the cameras in their stored order (sorted by image name,
which for drone and phone captures is the capture order). Frames are shared among the segments in
proportion to how far the camera moves and turns along each, so that the speed stays even. Positions
follow a cubic Hermite spline over the frame index with Catmull-Rom style tangents (from each key's
neighbours), orientations a quaternion slerp (the short way), the field of view a straight line; each key
camera is met exactly at its key frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from momentum_gs.data.camera import Camera
from momentum_gs.data.colmap.model import qvec_to_rotmat, rotmat_to_qvec
from momentum_gs.errors import UserError
from momentum_gs.data.up import camera_arrays, estimate_up

FRAMES_PER_CAMERA = 10  # default frames from one training camera to the next
MAX_DEFAULT_FRAMES = 900  # the default training path stops growing here (30 s at 30 fps)
MIN_FRAMES_PER_SEGMENT = 4  # fewer frames than this per key: every other camera is skipped, and so on
ORBIT_FRAMES = 240  # default frames of one orbit (8 s at 30 fps)


@dataclass
class CameraPath:
    """One camera per video frame.

    Attributes:
        cam_to_world: [F, 4, 4] float64 poses, OpenCV axes (x right, y down, z forward), world units.
        fov_y: [F] vertical field of view, degrees; square pixels, principal point at the image centre.
        width, height: frame size in pixels.
        fps: frames per second of the video.
    """

    cam_to_world: np.ndarray
    fov_y: np.ndarray
    width: int
    height: int
    fps: float

    @property
    def num_frames(self) -> int:
        """Frames in the path."""
        return len(self.cam_to_world)

    @property
    def seconds(self) -> float:
        """Length of the video."""
        return self.num_frames / self.fps

    def resized(self, width: int, height: int) -> "CameraPath":
        """The same path at another frame size (the vertical field of view is kept)."""
        return replace(self, width=int(width), height=int(height))

    def cameras(self) -> list[Camera]:
        """The frames as :class:`Camera` objects (named ``frame_00000`` …)."""
        focal = 0.5 * self.height / np.tan(np.radians(self.fov_y) / 2)
        cameras = []
        for i, (pose, f) in enumerate(zip(self.cam_to_world, focal)):
            K = np.array([[f, 0.0, self.width / 2], [0.0, f, self.height / 2], [0.0, 0.0, 1.0]])
            world_to_cam = np.eye(4)
            world_to_cam[:3, :3] = pose[:3, :3].T
            world_to_cam[:3, 3] = -pose[:3, :3].T @ pose[:3, 3]
            cameras.append(Camera(f"frame_{i:05d}", self.width, self.height, torch.from_numpy(K).float(),
                                  torch.from_numpy(world_to_cam).float(), uid=i))
        return cameras


def vertical_fov(camera: Camera) -> float:
    """Vertical field of view of ``camera`` in degrees."""
    return math.degrees(2 * math.atan(0.5 * camera.height / float(camera.K[1, 1])))


def poses_of(cameras: list[Camera]) -> np.ndarray:
    """[C, 4, 4] float64 camera-to-world poses of ``cameras``."""
    centres, R = camera_arrays(cameras)
    poses = np.tile(np.eye(4), (len(cameras), 1, 1))
    poses[:, :3, :3], poses[:, :3, 3] = R.transpose(0, 2, 1), centres
    return poses


def slerp(q0: np.ndarray, q1: np.ndarray, t: float) -> np.ndarray:
    """[4] unit quaternion a fraction ``t`` of the way from ``q0`` to ``q1`` ([4] unit, w x y z), the short way
    round (q and -q are one rotation)."""
    dot = float(q0 @ q1)
    if dot < 0:
        q1, dot = -q1, -dot
    if dot > 0.9995:  # nearly equal: the straight line is exact enough and avoids dividing by sin(0)
        q = q0 + t * (q1 - q0)
        return q / np.linalg.norm(q)
    angle = math.acos(dot)
    return (math.sin((1 - t) * angle) * q0 + math.sin(t * angle) * q1) / math.sin(angle)


def rotation_angle(R0: np.ndarray, R1: np.ndarray) -> float:
    """Angle in radians of the rotation taking ``R0`` to ``R1`` ([3, 3] each)."""
    return math.acos(float(np.clip((np.trace(R0.T @ R1) - 1) / 2, -1.0, 1.0)))


def frames_per_segment(cam_to_world: np.ndarray, total: int) -> np.ndarray:
    """[K-1] frame counts (each >= 1, summing to ``total``) of the segments between K key poses ([K, 4, 4]),
    in proportion to how far each moves (relative to the mean move) plus how far it turns (likewise)."""
    moves = np.linalg.norm(np.diff(cam_to_world[:, :3, 3], axis=0), axis=1)
    turns = np.array([rotation_angle(a[:3, :3], b[:3, :3]) for a, b in zip(cam_to_world[:-1], cam_to_world[1:])])
    weights = moves / max(moves.mean(), 1e-12) + turns / max(turns.mean(), 1e-6)
    if weights.sum() <= 0:  # all keys equal
        weights = np.ones_like(weights)
    spare = total - len(weights)
    share = weights / weights.sum() * spare
    counts = 1 + np.floor(share).astype(int)
    leftover = total - counts.sum()
    counts[np.argsort(-(share - np.floor(share)), kind="stable")[:leftover]] += 1  # largest remainders
    return counts


def interpolate_keys(cam_to_world: np.ndarray, fov_y: np.ndarray, frames: int
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A smooth path of ``frames`` poses through K key poses.

    Args:
        cam_to_world: [K, 4, 4] key poses (K >= 1), fov_y: [K] their vertical fields of view, degrees.
        frames: frames in the path, >= K.
    Returns:
        ([frames, 4, 4] poses, [frames] fields of view, [K] the frame index of each key).
    """
    K = len(cam_to_world)
    if K == 1:
        return np.repeat(cam_to_world, frames, 0), np.repeat(fov_y, frames), np.zeros(1, int)
    knots = np.concatenate([[0], np.cumsum(frames_per_segment(cam_to_world, frames - 1))])
    positions = cam_to_world[:, :3, 3]
    tangents = np.gradient(positions, knots.astype(float), axis=0)  # Catmull-Rom style, for uneven knots
    quats = np.stack([rotmat_to_qvec(pose[:3, :3]) for pose in cam_to_world])
    poses, fovs = np.tile(np.eye(4), (frames, 1, 1)), np.zeros(frames)
    for i in range(frames):
        k = min(int(np.searchsorted(knots, i, side="right")) - 1, K - 2)
        h = knots[k + 1] - knots[k]
        u = (i - knots[k]) / h
        hermite = (2 * u**3 - 3 * u**2 + 1, u**3 - 2 * u**2 + u, -2 * u**3 + 3 * u**2, u**3 - u**2)
        poses[i, :3, 3] = (hermite[0] * positions[k] + hermite[1] * h * tangents[k]
                           + hermite[2] * positions[k + 1] + hermite[3] * h * tangents[k + 1])
        poses[i, :3, :3] = qvec_to_rotmat(slerp(quats[k], quats[k + 1], u))
        fovs[i] = (1 - u) * fov_y[k] + u * fov_y[k + 1]
    return poses, fovs, knots


def key_cameras(count: int, frames: int) -> np.ndarray:
    """Indices of the cameras (of ``count``) used as keys of a ``frames``-frame path: all of them, or evenly
    spaced ones (first and last included) when there are too few frames for all."""
    keys = max(2, (frames - 1) // MIN_FRAMES_PER_SEGMENT + 1)
    if count <= keys:
        return np.arange(count)
    return np.unique(np.round(np.linspace(0, count - 1, keys)).astype(int))


def through_keys(path: CameraPath, frames: int) -> CameraPath:
    """The path resampled to ``frames`` frames: a smooth path (:func:`interpolate_keys`) through its poses, or
    through evenly spaced ones of them (:func:`key_cameras`) when there are too many for ``frames``."""
    keys = key_cameras(path.num_frames, frames)
    poses, fovs, _ = interpolate_keys(path.cam_to_world[keys], path.fov_y[keys], frames)
    return replace(path, cam_to_world=poses, fov_y=fovs)


def training_path(cameras: list[Camera], width: int, height: int, frames: int | None = None,
                  fps: float = 30.0) -> CameraPath:
    """A smooth path through ``cameras`` in their stored order (see the module docstring); ``frames`` defaults
    to :data:`FRAMES_PER_CAMERA` per step from one camera to the next, at most :data:`MAX_DEFAULT_FRAMES`."""
    if frames is None:
        frames = max(2, min(FRAMES_PER_CAMERA * (len(cameras) - 1) + 1, MAX_DEFAULT_FRAMES))
    keys = CameraPath(poses_of(cameras), np.array([vertical_fov(c) for c in cameras]), width, height, fps)
    return through_keys(keys, frames)


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """[4, 4] camera-to-world pose (OpenCV axes) of a camera at ``eye`` [3] looking at ``target`` [3], its
    image's up along ``up`` [3] (not parallel to the view)."""
    forward = (target - eye) / np.linalg.norm(target - eye)
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([right, np.cross(forward, right), forward], axis=1)  # columns: x, y (down), z
    pose[:3, 3] = eye
    return pose


def orbit_path(cameras: list[Camera], centre: np.ndarray, width: int, height: int, frames: int = ORBIT_FRAMES,
               fps: float = 30.0) -> CameraPath:
    """One turn around ``centre`` [3] (world units), looking at it, in the plane perpendicular to the scene's
    up direction (:func:`estimate_up`) at the cameras' median height, with the median horizontal distance of
    the cameras from ``centre`` as radius; it starts at the first camera's bearing and turns anticlockwise
    seen from above. Field of view: the cameras' median."""
    up = estimate_up(cameras)
    centres, _ = camera_arrays(cameras)
    middle = centre + (np.median(centres @ up) - centre @ up) * up  # the circle's centre
    spread = (centres - middle) - np.outer((centres - middle) @ up, up)
    radius = float(np.median(np.linalg.norm(spread, axis=1)))
    if not radius > 1e-9 * max(1.0, float(np.abs(centres).max())):
        raise UserError("the cameras stand on the scene's vertical axis; an orbit needs a horizontal spread")
    first = spread[int(np.argmax(np.linalg.norm(spread, axis=1) > 1e-9 * radius))]  # first camera off the axis
    e1 = first / np.linalg.norm(first)
    e2 = np.cross(up, e1)
    angles = 2 * np.pi * np.arange(frames) / frames  # the last frame stops one step short of the first
    poses = np.stack([look_at(middle + radius * (np.cos(a) * e1 + np.sin(a) * e2), centre, up) for a in angles])
    fov = float(np.median([vertical_fov(c) for c in cameras]))
    return CameraPath(poses, np.full(frames, fov), width, height, fps)
