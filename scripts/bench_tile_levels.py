"""How each level of a 3D Tiles export looks against the finest, seen from where CesiumJS would first draw it.

    python scripts/bench_tile_levels.py RUN --tile-size 4096 [--size 960x540] [--fov 60] [--max-sse 16]
    python scripts/bench_tile_levels.py --generated 1 --per-block 100000 --tile-size 8192

The run (or the generated city of ``tests/helpers/standard_city.py``) is exported as a tileset into a
temporary folder (or ``--out``), which is then read back as a viewer reads it. Every tile with children is
rendered by our renderer (``StandardGaussians.render``) next to the finest level under it (all the leaves below
the tile), from the same camera, on the same background (a tile of error 0 holds its children's Gaussians unmerged and is left out), at the distance where its ``geometricError`` projects to CesiumJS's default
maximum screen-space error. CesiumJS (``Cesium3DTile``, ``PerspectiveFrustum``):

    sse = geometricError · H / (d · 2 tan(fovy / 2)),   fovy = fov if W ≤ H else 2 atan(tan(fov / 2) · H / W),

with H the drawing buffer's height in pixels, fov the frustum's field of view (60° by default, the horizontal
one for a wide image), d the distance from the camera to the tile's bounding volume; a tile is drawn in place of
its children while sse ≤ maximumScreenSpaceError (16 px by default). So a tile is first drawn at

    d* = geometricError · H / (16 · 2 tan(fovy / 2)) = geometricError · f / 16,   f = H / (2 tan(fovy / 2)) px,

the closest, hence hardest, view of it. The camera looks at the box's centre from ``--azimuths`` directions
around the up axis, ``--elevation`` degrees above the horizon, placed where its distance to the box is d*.

Per level (depth from the root) the table gives the tiles, the Gaussians drawn against the finest level's, the
declared geometricError, d*, the PSNR (mean and worst over tiles and views), and two checks of the declared error
as an upper bound of the error drawn:
- on screen: where the edges are displaced. Edges are the pixels whose luminance gradient (central differences)
  exceeds 0.05 per pixel; the displacement is, over the edge pixels of either image, the distance in pixels to
  the nearest edge pixel of the other (an edge the level smeared away counts as far as the nearest edge it kept).
  Its 90th percentile (the declared error is a 90th percentile too) against the 16 px the declared error projects
  to at d*; the share of views within it;
- in the world: over the finest Gaussians under the tile, the distance from each centre to the nearest centre of
  the tile's own Gaussians (a floor of how far it moved), 90th percentile, against the declared error.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from scipy.spatial import cKDTree

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package, not an installed one

from momentum_gs.config import load_config  # noqa: E402
from momentum_gs.data.camera import Camera  # noqa: E402
from momentum_gs.eval.camera_path import look_at  # noqa: E402
from momentum_gs.export.tiles.blocks import export_tiles, write_tiles  # noqa: E402
from momentum_gs.export.tiles.gltf import load_glb  # noqa: E402
from momentum_gs.export.tiles.lod import concatenate  # noqa: E402
from momentum_gs.losses import psnr  # noqa: E402
from momentum_gs.render.kernels import describe_cpu  # noqa: E402
from tests.helpers.standard_city import generated_city  # noqa: E402

EDGE = 0.05  # luminance change per pixel that makes an edge


def fov_y(fov: float, width: int, height: int) -> float:
    """CesiumJS's vertical field of view (radians) of a frustum of ``fov`` on a ``width`` × ``height`` image."""
    return fov if width <= height else 2 * math.atan(math.tan(fov / 2) * height / width)


def first_drawn_at(geometric_error: float, height: int, fovy: float, max_sse: float = 16.0) -> float:
    """d*: the distance (world units) from the bounding volume at which a tile's error projects to ``max_sse``."""
    return geometric_error * height / (max_sse * 2 * math.tan(fovy / 2))


def camera_at(box: np.ndarray, distance: float, azimuth: float, elevation: float, width: int, height: int,
              fovy: float) -> Camera:
    """A camera looking at ``box``'s ([2, 3]) centre from ``azimuth`` and ``elevation`` (radians, z up), whose
    distance to the box is ``distance``."""
    centre = box.mean(0)
    way = np.array([math.cos(elevation) * math.cos(azimuth), math.cos(elevation) * math.sin(azimuth),
                    math.sin(elevation)])
    low, high = 0.0, distance + float(np.linalg.norm(box[1] - box[0]))
    for _ in range(60):  # the distance to the box grows along the ray from its centre
        t = (low + high) / 2
        eye = centre + t * way
        outside = np.maximum(np.maximum(box[0] - eye, eye - box[1]), 0.0)
        low, high = (t, high) if np.linalg.norm(outside) < distance else (low, t)
    pose = look_at(centre + high * way, centre, np.array([0.0, 0.0, 1.0]))
    f = height / (2 * math.tan(fovy / 2))
    K = torch.tensor([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], dtype=torch.float32)
    return Camera("level", width, height, K, torch.from_numpy(np.linalg.inv(pose)).float())


def edge_displacement(a: torch.Tensor, b: torch.Tensor) -> float:
    """90th percentile, over the edge pixels of ``a`` and ``b`` ([H, W, 3]), of the distance in pixels to the
    nearest edge pixel of the other image (inf when one has edges and the other none; 0 when neither has)."""
    edges = []
    for image in (a, b):
        luma = image.clamp(0, 1).numpy() @ np.array([0.2126, 0.7152, 0.0722])
        gy, gx = np.gradient(luma)
        edges.append(np.hypot(gx, gy) > EDGE)
    if not edges[0].any() and not edges[1].any():
        return 0.0
    if not edges[0].any() or not edges[1].any():
        return math.inf
    far = [ndimage.distance_transform_edt(~e) for e in edges]  # distance to the nearest edge pixel of each
    return float(np.percentile(np.concatenate([far[1][edges[0]], far[0][edges[1]]]), 90))


def tiles_of(folder: Path) -> list[dict]:
    """Every tile of ``folder/tileset.json`` with ``depth`` (0: the root) and ``leaves`` (the content URIs of
    the leaves under it) added."""
    out = []

    def visit(tile: dict, depth: int) -> list[str]:
        entry = {**tile, "depth": depth}
        out.append(entry)
        children = tile.get("children", [])
        entry["leaves"] = [uri for child in children for uri in visit(child, depth + 1)] or [tile["content"]["uri"]]
        return entry["leaves"]

    visit(json.loads((folder / "tileset.json").read_text())["root"], 0)
    return out


def measure_tile(tile: dict, folder: Path, width: int, height: int, fovy: float, max_sse: float, azimuths: int,
                 elevation: float) -> dict:
    """One tile with children against the leaves under it: the figures of the module notes, per view."""
    level = load_glb(folder / tile["content"]["uri"])
    finest = concatenate([load_glb(folder / uri) for uri in tile["leaves"]])
    centre, half = np.asarray(tile["boundingVolume"]["box"][:3]), np.asarray(tile["boundingVolume"]["box"][3:])
    reach = np.abs(half.reshape(3, 3)).sum(0)
    box = np.stack([centre - reach, centre + reach])
    distance = first_drawn_at(tile["geometricError"], height, fovy, max_sse)
    render_cfg = load_config().render
    views = []
    for k in range(azimuths):
        camera = camera_at(box, distance, 2 * math.pi * k / azimuths + 0.3, elevation, width, height, fovy)
        drawn, reference = (g.render(camera, render_cfg).clamp(0, 1) for g in (level, finest))
        views.append((float(psnr(drawn, reference)), edge_displacement(drawn, reference)))
    nearest = cKDTree(level.means.numpy()).query(finest.means.numpy())[0]
    return {"depth": tile["depth"], "drawn": len(level), "finest": len(finest), "error": tile["geometricError"],
            "distance": distance, "psnr": [v[0] for v in views], "pixels": [v[1] for v in views],
            "world_p90": float(np.percentile(nearest, 90))}


def table(rows: list[dict], max_sse: float) -> list[str]:
    """The Markdown table of the module notes, one line per depth."""
    lines = ["| level (depth) | tiles | Gaussians drawn / finest | geometricError | d* | PSNR mean (worst) | "
             f"edge displacement p90, median (worst) | views within {max_sse:g} px | world p90 / declared (worst) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for depth in sorted({r["depth"] for r in rows}):
        at = [r for r in rows if r["depth"] == depth]
        errors = [r["error"] for r in at]
        psnrs = [p for r in at for p in r["psnr"]]
        pixels = [p for r in at for p in r["pixels"]]
        ratios = [r["world_p90"] / r["error"] if r["error"] > 0 else math.inf for r in at]
        lines.append(
            f"| {depth} | {len(at)} | {sum(r['drawn'] for r in at):,} / {sum(r['finest'] for r in at):,} | "
            f"{min(errors):.3g}–{max(errors):.3g} | {np.median([r['distance'] for r in at]):.3g} | "
            f"{np.mean(psnrs):.2f} ({min(psnrs):.2f}) | {np.median(pixels):.1f} px ({max(pixels):.1f}) | "
            f"{sum(p <= max_sse for p in pixels)} / {len(pixels)} | {np.median(ratios):.2f} ({max(ratios):.2f}) |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", help="a run folder (mgs train / mgs demo)")
    parser.add_argument("--generated", type=int, metavar="BLOCKS", help="the generated city instead of a run")
    parser.add_argument("--per-block", type=int, default=100_000)
    parser.add_argument("--tile-size", type=int, default=4096)
    parser.add_argument("--sh-degree", type=int, default=3, choices=(0, 1, 2, 3))
    parser.add_argument("--size", default="960x540", help="image WIDTHxHEIGHT, pixels")
    parser.add_argument("--fov", type=float, default=60.0, help="CesiumJS's frustum fov, degrees (default 60)")
    parser.add_argument("--max-sse", type=float, default=16.0, help="maximumScreenSpaceError, pixels (default 16)")
    parser.add_argument("--azimuths", type=int, default=4, help="views per tile around the up axis")
    parser.add_argument("--elevation", type=float, default=45.0, help="degrees above the horizon")
    parser.add_argument("--out", help="folder for the tileset (default: a temporary one)")
    args = parser.parse_args()
    if (args.run is None) == (args.generated is None):
        parser.error("give a run folder or --generated BLOCKS")
    width, height = (int(v) for v in args.size.split("x"))
    fovy = fov_y(math.radians(args.fov), width, height)
    folder = Path(args.out or tempfile.mkdtemp(prefix="bench_levels_"))
    if args.run:
        export_tiles(args.run, folder, args.sh_degree, args.tile_size)
        source = f"run {args.run}"
    else:
        write_tiles(generated_city(args.generated, args.per_block, args.sh_degree), folder, args.tile_size)
        source = f"generated city, {args.generated} block(s) of {args.per_block}"
    print(f"cpu: {describe_cpu()}; torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    print(f"{source}; tiles of at most {args.tile_size}, SH degree {args.sh_degree}; {width}×{height} px, fov "
          f"{args.fov:g}° (fovy {math.degrees(fovy):.1f}°, f = {height / (2 * math.tan(fovy / 2)):.0f} px), "
          f"maximumScreenSpaceError {args.max_sse:g} px, {args.azimuths} views per tile at {args.elevation:g}° "
          f"elevation; tileset in {folder}\n")
    rows = [measure_tile(tile, folder, width, height, fovy, args.max_sse, args.azimuths, math.radians(args.elevation))
            for tile in tiles_of(folder) if tile.get("children") and tile["geometricError"] > 0]
    print("\n".join(table(rows, args.max_sse)))


if __name__ == "__main__":
    main()
