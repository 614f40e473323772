"""A pinhole camera: intrinsics in pixels and a world-to-camera pose (OpenCV axes)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch


@dataclass
class Camera:
    """One undistorted pinhole view.

    Axes follow OpenCV/COLMAP: x right, y down, z forward (into the scene).

    Attributes:
        name: image file name, relative to the images folder (e.g. ``"DJI_0018.JPG"``).
        width, height: image size in pixels.
        K: [3, 3] float32 intrinsics in pixels (fx, fy, cx, cy; the principal point is honoured).
        world_to_cam: [4, 4] float32 rigid transform from world to camera coordinates.
        image_path: the image file on disk, or None for a camera without an image.
        uid: index of the camera in its split (the appearance-embedding index for training views).
    """

    name: str
    width: int
    height: int
    K: torch.Tensor
    world_to_cam: torch.Tensor
    image_path: Path | None = None
    uid: int = 0

    @property
    def cam_to_world(self) -> torch.Tensor:
        """[4, 4] inverse of ``world_to_cam``."""
        return torch.linalg.inv(self.world_to_cam)

    @property
    def center(self) -> torch.Tensor:
        """[3] camera centre in world units."""
        R, t = self.world_to_cam[:3, :3], self.world_to_cam[:3, 3]
        return -R.T @ t

    def scaled(self, width: int, height: int) -> "Camera":
        """The same view at another resolution (intrinsics scaled per axis)."""
        sx, sy = width / self.width, height / self.height
        K = self.K.clone()
        K[0, :] *= sx
        K[1, :] *= sy
        return replace(self, width=width, height=height, K=K)

    def to(self, device: torch.device | str) -> "Camera":
        """The camera with its tensors on ``device``."""
        return replace(self, K=self.K.to(device), world_to_cam=self.world_to_cam.to(device))
