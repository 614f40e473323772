"""Several formats from one bake: ``mgs export RUN --format 3dtiles,html,ply``.

Each format exported on its own bakes (and refines) the run again, slightly differently each time and at a cost
each time. Here the formats that take baked Gaussians (every one-file format, and 3D Tiles) share one bake: the
merged model baked at the highest SH degree any of them asks for, the Gaussians far outside what the photos saw
dropped (:mod:`momentum_gs.export.floaters`), refined once with the most steps any of them refines by default (or
``--refine``); each format then takes those Gaussians, its colours cut to its own degree. The 3D Tiles are cut
from them as one block (their memory is then that of the whole bake, not of one block: :mod:`momentum_gs.export.
tiles.blocks`). The formats that do their own work (streamed SOG, the Scaffold-GS layout) run as on their own.
"""

from __future__ import annotations

from pathlib import Path

from momentum_gs.data.georef import read_georef, write_sidecar
from momentum_gs.data.scene import load_scene
from momentum_gs.errors import UserError
from momentum_gs.export.floaters import views_of
from momentum_gs.export.formats import FORMATS, Context, merged_model
from momentum_gs.export.run import baked_for_export, export_run
from momentum_gs.export.tiles.blocks import TILESET_NAMES, tiles_lines, write_tiles
from momentum_gs.export.tiles.lod import TILE_SIZE, check_tile_count
from momentum_gs.io.folders import written_whole
from momentum_gs.io.run_folder import RunFolder
from momentum_gs.io.splat_transform import splat_transform_command
from momentum_gs.model.standard import StandardGaussians

SHARED_FOLDERS = ("3dtiles",)  # the folder formats that take baked Gaussians


def shares_bake(name: str) -> bool:
    """Whether format ``name`` takes its Gaussians from the shared bake."""
    return not FORMATS[name].folder or name in SHARED_FOLDERS


def parse_formats(text: str) -> list[str]:
    """``"3dtiles,html,ply"`` → the names, each once and known; ValueError naming the first unknown one."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in FORMATS]
    if not names or unknown:
        raise ValueError(f"{unknown[0] if unknown else text!r} is not a format; give one or more of "
                         f"{', '.join(FORMATS)}, separated by commas")
    return list(dict.fromkeys(names))


def with_degree(gaussians: StandardGaussians, degree: int) -> StandardGaussians:
    """``gaussians`` with their colours cut to SH degree ``degree`` (the same Gaussians otherwise)."""
    if degree >= gaussians.degree:
        return gaussians
    return StandardGaussians(gaussians.means, gaussians.quats, gaussians.scales, gaussians.opacities,
                             gaussians.sh[:, : (degree + 1) ** 2].contiguous())


def export_formats(run_dir: str | Path, formats: list[str], *, out: str | Path | None = None,
                   sh_degree: int | None = None, refine_steps: int | None = None, refine_budget: float | None = None,
                   tile_size: int = TILE_SIZE, tile_compression: str = "spz", keep_floaters: bool = False) -> list[str]:
    """Write a run in each of ``formats`` (one format: :func:`~momentum_gs.export.run.export_run`); returns the
    lines to print. ``out``: the folder the one-file formats go into and the folder formats under (default
    ``RUN/export``); the other options as :func:`~momentum_gs.export.run.export_run`'s, ``sh_degree`` for the
    formats that take a choice."""
    options = dict(sh_degree=sh_degree, refine_steps=refine_steps, refine_budget=refine_budget, tile_size=tile_size,
                   tile_compression=tile_compression, keep_floaters=keep_floaters)
    if len(formats) == 1:
        return export_run(run_dir, format=formats[0], out=out, **options)
    run = RunFolder(run_dir)
    out = Path(out or run.export)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file; the export needs a folder (--out)")
    shared = [name for name in formats if shares_bake(name)]
    lines = _export_shared(run, shared, out, options) if shared else []
    for name in formats:
        if name not in shared:
            spec = FORMATS[name]
            lines += export_run(run_dir, format=name, out=out / spec.output.rstrip("/") if spec.folder else out,
                                **options)
    return lines


def _export_shared(run: RunFolder, names: list[str], out: Path, options: dict) -> list[str]:
    """The formats ``names`` from one bake into ``out``; returns the lines to print."""
    degrees = {name: options["sh_degree"] if options["sh_degree"] is not None and FORMATS[name].sh_choice
               else FORMATS[name].sh_degree for name in names}
    steps = options["refine_steps"]
    if steps is None:
        steps = max(FORMATS[name].refine_steps or 0 for name in names)
    cfg, model = merged_model(run)
    command = (splat_transform_command("--format sog") if any(FORMATS[n].splat_transform for n in names) else None)
    georef = read_georef(Path(cfg.data.path))
    scene = load_scene(cfg.data)
    box = views_of(scene, georef, options["keep_floaters"])
    degree = max(degrees.values())
    gaussians, how, dropped = baked_for_export(model, scene.train, cfg.render, degree, steps,
                                               options["refine_budget"], box)
    lines = [f"one bake for {', '.join(names)}: {len(gaussians)} standard 3D Gaussians, SH degree {degree}, {how}"]
    lines += [dropped] if dropped else []
    if "3dtiles" in names:  # before any format's file
        check_tile_count([len(gaussians)], options["tile_size"])
    context = Context(scene.train[0], cfg.render.background, georef, command)
    for name in names:
        spec, own = FORMATS[name], with_degree(gaussians, degrees[name])
        if name == "3dtiles":
            with written_whole(out / "3dtiles", "a 3D Tiles export", TILESET_NAMES) as work:
                written = write_tiles([own], work, options["tile_size"], georef, options["tile_compression"])
            written.path = out / "3dtiles" / written.path.name
            lines += tiles_lines(written, degrees[name], options["tile_size"], options["tile_compression"], georef,
                                 cfg.data.path)
            continue
        path = spec.write(own, out / spec.output, context)
        lines.append(f"{name}: {path} ({path.stat().st_size / 2**20:.1f} MB, SH degree {degrees[name]}), {spec.what}")
        sidecar = write_sidecar(path, georef, own.means.detach().cpu().numpy(), own.opacities.detach().cpu().numpy())
        if sidecar:
            lines.append(f"georeference of {path.name}: {sidecar}")
    return lines
