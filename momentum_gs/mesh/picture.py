"""A shaded picture of a triangle mesh from a pinhole camera with OpenCV (no OpenGL): flat-shaded triangles
filled far to near (the painter's algorithm), which is right for the small triangles of an extracted mesh; and
the overview ``mgs mesh`` writes beside its mesh, seen from the training camera that looks at the scene."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from momentum_gs.io.atomic import atomic_write_bytes

SUBPIXEL_BITS = 4  # fixed-point corners: 1/16 pixel
PICTURE_WIDTH = 960  # pixels of each mesh's picture in the overview


def shade_mesh(vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray | None, K: np.ndarray,
               world_to_cam: np.ndarray, width: int, height: int,
               background: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """[H, W, 3] uint8 RGB picture: each triangle's mean vertex colour (or grey) times a light from above left.

    Args: vertices [V, 3] world, faces [F, 3], colors [V, 3] uint8 or None, K [3, 3] pixels, world_to_cam [4, 4].
    """
    image = np.empty((height * width, 3), np.uint8)
    image[:] = background
    cam = vertices @ world_to_cam[:3, :3].T + world_to_cam[:3, 3]
    tri = cam[faces]  # [F, 3, 3]
    front = (tri[..., 2] > 1e-3).all(1)
    tri, faces = tri[front], faces[front]
    if len(faces) == 0:
        return image.reshape(height, width, 3)
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normal /= np.linalg.norm(normal, axis=1, keepdims=True).clip(1e-12)
    light = np.array([0.3, -0.6, -1.0]) / np.linalg.norm([0.3, -0.6, -1.0])  # camera frame: from above left
    shade = 0.3 + 0.7 * np.abs(normal @ light)  # [F]
    base = np.full((len(faces), 3), 180.0) if colors is None else colors[faces].astype(np.float64).mean(1)
    rgb = np.clip(base * shade[:, None], 0, 255).astype(np.int64)
    pix = tri[..., :2] / tri[..., 2:] * K.diagonal()[:2] + K[:2, 2]  # [F, 3, 2]
    on_image = (pix.max(1) >= 0).all(1) & (pix.min(1)[:, 0] < width) & (pix.min(1)[:, 1] < height)
    order = np.flatnonzero(on_image)[np.argsort(-tri[on_image][..., 2].max(1), kind="stable")]  # far first
    fixed = np.round(pix[order] * (1 << SUBPIXEL_BITS)).astype(np.int32)
    canvas = image.reshape(height, width, 3)[..., ::-1].copy()  # OpenCV draws BGR
    fill = cv2.fillConvexPoly
    for corners, colour in zip(fixed, rgb[order][:, ::-1].tolist()):
        fill(canvas, corners, colour, cv2.LINE_8, SUBPIXEL_BITS)
    return np.ascontiguousarray(canvas[..., ::-1])


def write_overview(path: Path, cameras: list, centre: np.ndarray, meshes: list[tuple]) -> None:
    """The ``meshes`` ((vertices, faces, colours) each) side by side, shaded, from the training camera that looks
    nearest the world point ``centre`` [3], as a PNG at ``path``."""
    camera = overview_camera(cameras, centre)
    picture = np.concatenate([_picture(*mesh, camera) for mesh in meshes], axis=1)
    atomic_write_bytes(path, cv2.imencode(".png", picture[..., ::-1])[1].tobytes())


def overview_camera(cameras: list, centre: np.ndarray):
    """The training camera whose optical axis passes nearest the world point ``centre``."""
    def miss(cam) -> float:
        w2c = cam.world_to_cam.double().numpy()
        p = w2c[:3, :3] @ centre + w2c[:3, 3]
        return float(np.hypot(p[0], p[1]) / max(p[2], 1e-9)) if p[2] > 0 else np.inf

    return min(cameras, key=miss)


def _picture(vertices, faces, colors, camera) -> np.ndarray:
    """[H, W, 3] uint8 shaded picture of a mesh from ``camera``, scaled to ``PICTURE_WIDTH`` pixels wide."""
    scale = PICTURE_WIDTH / camera.width
    K = camera.K.double().numpy().copy()
    K[:2] *= scale
    return shade_mesh(vertices, faces, colors, K, camera.world_to_cam.double().numpy(), PICTURE_WIDTH,
                      round(camera.height * scale))
