"""Results a web browser opens: a one-file HTML viewer of our own, and PlayCanvas SOG through the optional
``splat-transform`` command.

The viewer is ``viewer.html`` beside this module with the scene filled in: the ``.splat`` records
(:mod:`momentum_gs.export.splat`, base64), one training camera to open on and the background colour, as JSON
in the page. It needs no network and no server (it opens from a local file) and draws with WebGL2: each
Gaussian projected as our renderer projects it, sorted back to front on the CPU, blended over the
background. ``splat-transform`` (Node.js, :mod:`momentum_gs.io.splat_transform`) converts our standard PLY into
the formats of PlayCanvas's viewers.
"""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

from momentum_gs.data.camera import Camera
from momentum_gs.errors import UserError
from momentum_gs.export.splat import splat_bytes
from momentum_gs.export.standard_ply import save_standard_ply
from momentum_gs.io.atomic import atomic_write_text, work_folder_beside
from momentum_gs.io.safe_path import not_a_link
from momentum_gs.io.splat_transform import run_splat_transform
from momentum_gs.model.standard import StandardGaussians

VIEWER = Path(__file__).with_name("viewer.html")
NEAR = 0.01  # world units: the renderer's near plane, below which a Gaussian is not drawn
# The most Gaussians the one-file page carries: in headless Chromium on the development machine, every page up to this
# size showed its first frame within ten seconds and then redrew smoothly, and larger ones did not always (docs/web.md,
# scripts/bench_web_load.py). A larger scene goes to the tileset, which viewers stream by level of detail.
HTML_MAX_GAUSSIANS = 500_000


def orbit_distance(gaussians: StandardGaussians, camera: Camera) -> float:
    """Median depth (world units) of the Gaussians in front of ``camera``: the viewer orbits the point that far
    along the camera's axis; 1 when none is in front."""
    world_to_cam = camera.world_to_cam.detach().cpu().double()
    depths = gaussians.means.detach().cpu().double() @ world_to_cam[2, :3] + world_to_cam[2, 3]
    ahead = depths[depths > NEAR]
    return float(ahead.median()) if len(ahead) else 1.0


def viewer_page(gaussians: StandardGaussians, camera: Camera, background: tuple[float, float, float]) -> str:
    """The viewer page of ``gaussians`` (their SH DC term as the colour), opening on ``camera`` (its pose,
    intrinsics in pixels and size) over ``background`` (RGB in [0, 1])."""
    scene = {"splats": base64.b64encode(splat_bytes(gaussians)).decode("ascii"),
             "camera": {"width": camera.width, "height": camera.height, "K": camera.K.tolist(),
                        "world_to_cam": camera.world_to_cam.tolist()},
             "background": [float(c) for c in background], "orbit_distance": orbit_distance(gaussians, camera)}
    text = json.dumps(scene).replace("<", "\\u003c")  # nothing in the JSON can close the <script> element
    return VIEWER.read_text(encoding="utf-8").replace("{{SCENE}}", text)


def save_viewer(gaussians: StandardGaussians, camera: Camera, background: tuple[float, float, float],
                path: str | Path) -> Path:
    """Write :func:`viewer_page` to ``path`` atomically; returns the path. More than ``HTML_MAX_GAUSSIANS``
    Gaussians are refused in one line (a browser would take too long to open the page; see docs/web.md)."""
    if len(gaussians) > HTML_MAX_GAUSSIANS:
        raise UserError(f"{len(gaussians):,} Gaussians are more than a browser opens in one page in reasonable time "
                        f"(at most {HTML_MAX_GAUSSIANS:,}, docs/web.md); export the run as a tileset with levels of "
                        "detail, which viewers stream: --format 3dtiles")
    gaussians.require_finite(path)
    atomic_write_text(path, viewer_page(gaussians, camera, background))
    return Path(path)


def save_with_splat_transform(command: list[str], gaussians: StandardGaussians, out: Path) -> Path:
    """Write ``gaussians`` as a standard PLY and convert it with splat-transform into ``out``, whose extension
    picks the format (.sog, .html, ...). Both are made in a temporary folder beside ``out`` and the result is
    moved into place when complete: a failed or killed conversion leaves nothing behind."""
    gaussians.require_finite(out)
    folder = work_folder_beside(out)
    try:
        ply, made = save_standard_ply(gaussians, folder / "point_cloud.ply"), folder / out.name
        run_splat_transform(command, [str(ply)], made)
        made.replace(not_a_link(out))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return out
