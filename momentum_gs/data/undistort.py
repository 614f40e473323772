"""Pinhole intrinsics for every supported COLMAP camera, and OpenCV undistortion for the distorted ones.

Distorted images (SIMPLE_RADIAL, RADIAL, OPENCV, FULL_OPENCV) are resampled once, when the image cache is
built (``momentum_gs.data.images``), into a pinhole camera of the **same size** whose matrix comes from
``cv2.getOptimalNewCameraMatrix(alpha=0)``: the view is cropped just enough that every output pixel sees
the scene. Keeping the distorted K instead would leave black, invalid corners that the photometric loss
would learn as black. The principal point is kept where OpenCV puts it, not forced to the centre.

Pixel conventions: COLMAP puts the centre of the top-left pixel at (0.5, 0.5), OpenCV at (0, 0). Every K
here, and in ``Camera``, uses COLMAP's; the half-pixel shift is applied only around the OpenCV calls.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from momentum_gs.data.colmap.model import ColmapCamera, check_camera

PINHOLE_MODELS = ("SIMPLE_PINHOLE", "PINHOLE")


def opencv_intrinsics(camera: ColmapCamera) -> tuple[np.ndarray, np.ndarray]:
    """The camera as OpenCV sees it: K [3, 3] float64 (COLMAP pixel convention) and distortion coefficients.

    The coefficients follow OpenCV's order (k1, k2, p1, p2[, k3, k4, k5, k6]); COLMAP's OPENCV and
    FULL_OPENCV models use the same formulas, and (SIMPLE_)RADIAL are OPENCV with fewer terms.
    """
    check_camera(camera.id, camera.model, len(camera.params), "COLMAP model")
    p = np.asarray(camera.params, np.float64)
    if camera.model in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL"):
        fx = fy = p[0]
        cx, cy, extra = p[1], p[2], p[3:]
    else:
        fx, fy, cx, cy, extra = p[0], p[1], p[2], p[3], p[4:]
    dist = np.zeros(8 if camera.model == "FULL_OPENCV" else 4)
    dist[: len(extra)] = extra  # (SIMPLE_)RADIAL fill k1 (and k2) and leave the tangential terms at 0
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    return K, dist


def is_distorted(camera: ColmapCamera) -> bool:
    """True when the camera's images must be resampled to become pinhole images."""
    return camera.model not in PINHOLE_MODELS and bool(np.any(opencv_intrinsics(camera)[1] != 0))


def _to_opencv(K: np.ndarray, shift: float) -> np.ndarray:
    """K with its principal point moved by ``shift`` pixels (-0.5: COLMAP → OpenCV, +0.5: back)."""
    K = K.copy()
    K[:2, 2] += shift
    return K


@functools.lru_cache(maxsize=1)  # jobs come grouped by camera; the tables take 6 bytes per pixel
def _remap_tables(size: tuple[int, int], K: tuple, dist: tuple, new_K: tuple) -> tuple[np.ndarray, np.ndarray]:
    K, new_K = np.array(K).reshape(3, 3), np.array(new_K).reshape(3, 3)
    return cv2.initUndistortRectifyMap(K, np.array(dist), None, new_K, size, cv2.CV_16SC2)


@dataclass(frozen=True, eq=False)
class Undistorter:
    """Resamples the images of one distorted camera into a pinhole camera of the same size.

    Attributes:
        width, height: image size in pixels, before and after.
        K_distorted: [3, 3] intrinsics of the distorted camera; ``dist``: its OpenCV coefficients.
        K: [3, 3] float64 intrinsics of the undistorted images (COLMAP pixel convention).
    """

    width: int
    height: int
    K_distorted: np.ndarray
    dist: np.ndarray
    K: np.ndarray

    @property
    def recipe(self) -> str:
        """A text naming this exact resampling, so that a cache made with other parameters is rebuilt."""
        numbers = np.concatenate([self.K_distorted.ravel(), self.dist, self.K.ravel()])
        return f"undistort {self.width}x{self.height} " + " ".join(f"{v:.9g}" for v in numbers)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """[H, W, C] image of the distorted camera → the same-size pinhole image (bilinear resampling)."""
        if image.shape[:2] != (self.height, self.width):
            raise ValueError(f"image is {image.shape[1]}x{image.shape[0]}, camera is {self.width}x{self.height}")
        map1, map2 = _remap_tables(
            (self.width, self.height),
            tuple(_to_opencv(self.K_distorted, -0.5).ravel()),
            tuple(self.dist),
            tuple(_to_opencv(self.K, -0.5).ravel()),
        )
        # Replicating the border only matters within a pixel of the edge: alpha=0 keeps the view inside.
        return cv2.remap(image, map1, map2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def make_undistorter(camera: ColmapCamera) -> Undistorter:
    """The undistorter of a distorted camera (see the module docstring for the choice of K)."""
    K, dist = opencv_intrinsics(camera)
    size = (camera.width, camera.height)
    new_K, _ = cv2.getOptimalNewCameraMatrix(_to_opencv(K, -0.5), dist, size, 0.0, size)
    return Undistorter(camera.width, camera.height, K, dist, _to_opencv(np.asarray(new_K, np.float64), 0.5))


def pinhole_intrinsics(camera: ColmapCamera) -> tuple[np.ndarray, Undistorter | None]:
    """K [3, 3] float64 of the pinhole images this camera yields, and the undistorter (None if pinhole)."""
    if not is_distorted(camera):
        return opencv_intrinsics(camera)[0], None
    undistorter = make_undistorter(camera)
    return undistorter.K, undistorter
