"""The formats of ``mgs export``, in one table, :data:`FORMATS`: for each format its writer, the SH degree it
bakes by default, whether the baked Gaussians may be refined and how many steps by default, what it writes
and one line saying what it is. The command's choices, help and defaults and
:func:`~momentum_gs.export.shared.export_formats`'s dispatch all read it; no other place describes a format.

A format that writes one file (its ``output`` a file name) is baked from the run's merged model, maybe
refined, and written into the output folder by ``write(gaussians, path, context)``
(:func:`~momentum_gs.export.shared.export_formats` does the rest); one that writes a folder (its ``output`` ends
in ``/``) does its own work in ``write(request)`` and returns the lines to print. A folder format with a
``from_bake`` writer (3D Tiles) also takes the Gaussians of a bake shared with other formats.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from momentum_gs.config import Config
from momentum_gs.data.camera import Camera
from momentum_gs.data.georef import ply_comment
from momentum_gs.errors import UserError
from momentum_gs.export.las import save_las
from momentum_gs.export.scaffold import export_scene
from momentum_gs.export.splat import save_splat
from momentum_gs.export.spz import save_spz
from momentum_gs.export.standard_ply import save_standard_ply
from momentum_gs.export.tiles.blocks import export_tiles, tiles_lines, write_tiles_whole
from momentum_gs.export.tiles.lod import TILE_SIZE, check_tile_count
from momentum_gs.export.tiles.sog_lod import export_sog_lod
from momentum_gs.export.web import save_viewer, save_with_splat_transform
from momentum_gs.io.run_folder import RunFolder
from momentum_gs.model.gaussian_scene import GaussianScene
from momentum_gs.trained import load_run

REFINE_STEPS = 500  # --refine's default for the formats that refine


@dataclass(frozen=True)
class Request:
    """One ``mgs export``, every option given or taken from the format's defaults: the run, the format's name,
    ``out`` (the folder its file goes into, or the folder it writes), the SH degree (None: nothing is baked),
    the refinement's steps and time budget (seconds; None: the default of
    :func:`~momentum_gs.export.refine.default_budget`), and the tiles' size (Gaussians) and compression."""

    run: RunFolder
    format: str
    out: Path
    sh_degree: int | None
    refine_steps: int
    refine_budget: float | None
    tile_size: int
    tile_compression: str
    keep_floaters: bool = False  # keep the Gaussians far outside what the photos saw (export.floaters)


@dataclass(frozen=True)
class Context:
    """What a writer of baked Gaussians may need besides them: the first training camera (the page opens on it),
    the background colour (RGB in [0, 1]), the scene's georeference (None without one), the splat-transform
    command (found before the bake; None for a format without it), the tiles' size and compression, and the
    scene's folder."""

    camera: Camera
    background: tuple[float, float, float]
    georef: dict | None
    splat_transform: list[str] | None
    tile_size: int = TILE_SIZE
    tile_compression: str = "spz"
    data_path: str = ""


@dataclass(frozen=True)
class Format:
    """One format of ``mgs export`` (see the module notes)."""

    what: str  # one line: what it is (the command's help, and the line a one-file export ends with)
    output: str  # the file written into the output folder, or ("name/") the folder RUN/export/name --out replaces
    write: Callable  # one file: write(gaussians, path, Context) -> path; a folder: write(Request) -> lines to print
    sh_degree: int | None = 3  # the SH degree baked by default; None: nothing is baked
    sh_choice: bool = True  # whether --sh-degree changes it (False: the format holds that degree only)
    refine_steps: int | None = REFINE_STEPS  # --refine's default; None: refining is refused (only 0 is taken)
    splat_transform: bool = False  # made by PlayCanvas's splat-transform (Node.js), found before any baking
    # a folder format that also takes a shared bake: from_bake(gaussians, folder, Context, sh_degree) -> lines; and
    # check(gaussians, Context), which refuses in one line before any format's file is written
    from_bake: Callable | None = None
    check: Callable | None = None

    @property
    def folder(self) -> bool:
        """Whether the format writes a folder of its own (rather than one file into the output folder)."""
        return self.output.endswith("/")

    def takes_bake(self, alone: bool) -> bool:
        """Whether it is written from baked Gaussians given to it: a one-file format always; a folder format with
        ``from_bake`` when it shares the bake with other formats (``alone``: exported on its own, it does its own
        work, e.g. 3D Tiles block by block in the memory of one block)."""
        return not self.folder or (self.from_bake is not None and not alone)


def merged_model(run: RunFolder) -> tuple[Config, GaussianScene]:
    """The run's config and its blocks merged into one scene; a run of independent decoders is a UserError."""
    cfg, model, _ = load_run(run.root)
    if not isinstance(model, GaussianScene):
        raise UserError("this run trained independent decoders per block; both export layouts need one decoder")
    return cfg, model


def _scaffold(request: Request) -> list[str]:
    cfg, model = merged_model(request.run)
    path = export_scene(model, cfg.model, request.out)
    return [f"exported the merged model, {model.anchors.num_anchors} anchors, in the Scaffold-GS layout: "
            f"{path / 'point_cloud.ply'} and {path / 'decoder.pt'}"]


def _tiles(request: Request) -> list[str]:
    return export_tiles(request.run.root, request.out, sh_degree=request.sh_degree, tile_size=request.tile_size,
                        tile_compression=request.tile_compression, keep_floaters=request.keep_floaters)


def _tiles_from_bake(gaussians, folder: Path, context: Context, sh_degree: int) -> list[str]:
    written = write_tiles_whole([gaussians], folder, context.tile_size, context.georef, context.tile_compression)
    return tiles_lines(written, sh_degree, context.tile_size, context.tile_compression, context.georef,
                       context.data_path)


def _sog_lod(request: Request) -> list[str]:
    return export_sog_lod(request.run.root, request.out, sh_degree=request.sh_degree, tile_size=request.tile_size)


FORMATS: dict[str, Format] = {
    "ply": Format("the layout 3DGS viewers read", "point_cloud.ply",
                  lambda g, path, c: save_standard_ply(g, path, [ply_comment(c.georef)] if c.georef else [])),
    "splat": Format("the .splat file web viewers read", "scene.splat", lambda g, path, c: save_splat(g, path),
                    sh_degree=0, sh_choice=False),  # 32 bytes a Gaussian: its colour without view dependence
    "spz": Format("the .spz file web viewers read", "scene.spz", lambda g, path, c: save_spz(g, path)),
    "html": Format("a page that shows the scene in a web browser", "scene.html",
                   lambda g, path, c: save_viewer(g, c.camera, c.background, path), sh_degree=0, sh_choice=False),
    # degree 0 by default: splat-transform compresses higher degrees slowly on a CPU
    "sog": Format("PlayCanvas's compressed format", "scene.sog",
                  lambda g, path, c: save_with_splat_transform(c.splat_transform, g, path), sh_degree=0,
                  splat_transform=True),
    # points for GIS: their colour without view dependence, nothing refined by default
    "las": Format("the Gaussians' centres and colours as a LAS 1.4 point cloud, in the UTM zone of a georeferenced "
                  "scene", "points.las", lambda g, path, c: save_las(g, path, c.georef), sh_degree=0, sh_choice=False,
                  refine_steps=0),
    # the levels are baked from the training views block by block: nothing to refine
    "sog-lod": Format("PlayCanvas's streamed SOG (lod-meta.json and chunks) with levels of detail, block by block",
                      "sog-lod/", _sog_lod, sh_degree=0, refine_steps=None, splat_transform=True),
    "3dtiles": Format("an OGC 3D Tiles 1.1 tileset (tileset.json and glTF KHR_gaussian_splatting tiles) with "
                      "levels of detail, block by block, placed on the globe when the scene has a georef.json",
                      "3dtiles/", _tiles, refine_steps=None, from_bake=_tiles_from_bake,
                      check=lambda g, c: check_tile_count([len(g)], c.tile_size)),
    # the anchors and the decoder as they are: nothing baked, a --refine given is not used
    "scaffold": Format("the anchor PLY and decoder.pt of the Scaffold-GS layout", "scaffold/", _scaffold,
                       sh_degree=None, sh_choice=False, refine_steps=0),
}
