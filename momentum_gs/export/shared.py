"""``mgs export``: a run in one format or several (``--format 3dtiles,html,ply``), through one path.

The formats that take baked Gaussians (every one-file format, and with others 3D Tiles: :meth:`Format.takes_bake
<momentum_gs.export.formats.Format.takes_bake>`) share one bake: the merged model baked at the highest SH degree any
of them asks for, the Gaussians far outside what the photos saw dropped (:mod:`momentum_gs.export.floaters`),
refined once with the most steps any of them refines by default (or ``--refine``); each format then takes those
Gaussians, its colours cut to its own degree. Each format exported on its own would bake (and refine) the run
again, slightly differently each time and at a cost each time. The 3D Tiles of a shared bake are cut from it as
one block (their memory is then that of the whole bake, not of one block: :mod:`momentum_gs.export.tiles.blocks`).
The formats that do their own work (the 3D Tiles alone, streamed SOG, the Scaffold-GS layout) run as on their own.
"""

from __future__ import annotations

from pathlib import Path

from momentum_gs.data.footprint import Ground
from momentum_gs.data.georef import read_georef, write_sidecar
from momentum_gs.data.scene import load_scene
from momentum_gs.errors import UserError
from momentum_gs.export.bake import baked_for_export, with_degree
from momentum_gs.export.floaters import views_of
from momentum_gs.export.formats import FORMATS, Context, Request, merged_model
from momentum_gs.export.tiles.lod import TILE_SIZE
from momentum_gs.io.run_folder import RunFolder
from momentum_gs.io.splat_transform import splat_transform_command


def parse_formats(text: str) -> list[str]:
    """``"3dtiles,html,ply"`` → the names, each once and known; ValueError naming the first unknown one."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in FORMATS]
    if not names or unknown:
        raise ValueError(f"{unknown[0] if unknown else text!r} is not a format; give one or more of "
                         f"{', '.join(FORMATS)}, separated by commas")
    return list(dict.fromkeys(names))


def export_run(run_dir: str | Path, *, format: str = "ply", out: str | Path | None = None, **options) -> list[str]:
    """A run in one ``format`` (:func:`export_formats` with one name): ``out`` is the folder its file goes into
    (default ``RUN/export``), or the folder a format of its own folder writes (default ``RUN/export/<format>``)."""
    return export_formats(run_dir, [format], out=out, **options)


def export_formats(run_dir: str | Path, formats: list[str], *, out: str | Path | None = None,
                   sh_degree: int | None = None, refine_steps: int | None = None, refine_budget: float | None = None,
                   tile_size: int = TILE_SIZE, tile_compression: str = "spz", keep_floaters: bool = False,
                   ground: Ground | None = None) -> list[str]:
    """Write a run in each of ``formats`` (keys of :data:`~momentum_gs.export.formats.FORMATS`); returns the lines
    to print. Nothing is written through a link: below ``RUN`` none may lead out of it, and a file to write that
    is a link is refused (:mod:`momentum_gs.io.safe_path`).

    ``out``: the folder the one-file formats go into and the folder formats under (default ``RUN/export``; one
    folder format alone: its own folder, default ``RUN/export/<format>``). ``sh_degree``: the baked Gaussians' SH
    degree, for the formats that take a choice; ``refine_steps``: steps of training them further; each None: the
    formats' defaults. ``refine_budget``: seconds the refinement may take (default
    :func:`~momentum_gs.export.refine.default_budget`; 0: no limit). ``tile_size``: Gaussians per tile of the
    formats with levels of detail (:mod:`momentum_gs.export.tiles`); ``tile_compression``: the 3D Tiles' tiles as
    SPZ streams ("spz") or float32 attributes ("none"). ``keep_floaters``: keep the Gaussians far outside what the
    photos saw (:mod:`momentum_gs.export.floaters`); ``ground``: the ground they see, z up
    (:class:`~momentum_gs.data.footprint.Ground`; None: worked out when needed)."""
    for name in formats:
        if name not in FORMATS:
            raise UserError(f"--format must be one of {', '.join(FORMATS)}, got {name}")
    run, alone = RunFolder(run_dir), len(formats) == 1
    first = FORMATS[formats[0]]
    if alone and first.folder and not first.takes_bake(alone):
        out = Path(out or run.path("export", first.output.rstrip("/")))
    else:
        out = Path(out or run.export)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file; the export needs a folder (--out)")
    requests = {name: _request(run, name, out, alone, sh_degree, refine_steps, refine_budget, tile_size,
                               tile_compression, keep_floaters) for name in formats}
    baked = [name for name in formats if FORMATS[name].takes_bake(alone)]
    lines = _export_baked([requests[name] for name in baked], ground) if baked else []
    for name in formats:
        if name not in baked:
            lines += FORMATS[name].write(requests[name])
    return lines


def _request(run: RunFolder, name: str, out: Path, alone: bool, sh_degree, refine_steps, refine_budget,
             tile_size: int, tile_compression: str, keep_floaters: bool) -> Request:
    """Format ``name``'s request: every option given, or its default; ``out`` its file's folder, or the folder it
    writes (``out`` itself when exported alone)."""
    spec = FORMATS[name]
    if refine_steps and spec.refine_steps is None and not spec.takes_bake(alone):
        raise UserError(f"--refine is not available with --format {name}: its levels are baked from the training "
                        "views block by block; give --refine 0")
    folder = out if alone or not spec.folder else out / spec.output.rstrip("/")
    return Request(run=run, format=name, out=folder,
                   sh_degree=sh_degree if sh_degree is not None and spec.sh_choice else spec.sh_degree,
                   refine_steps=(spec.refine_steps or 0) if refine_steps is None else refine_steps,
                   refine_budget=refine_budget, tile_size=tile_size, tile_compression=tile_compression,
                   keep_floaters=keep_floaters)


def _export_baked(requests: list[Request], ground: Ground | None = None) -> list[str]:
    """The formats of ``requests`` (all of one run) from one bake; returns the lines to print."""
    first = requests[0]
    names = [request.format for request in requests]
    steps = max(request.refine_steps for request in requests)
    cfg, model = merged_model(first.run)
    # before baking: a missing tool is said at once
    splat = any(FORMATS[name].splat_transform for name in names)
    command = splat_transform_command(f"--format {'sog' if len(names) > 1 else first.format}") if splat else None
    georef = read_georef(Path(cfg.data.path))  # a scene from `mgs sfm` with GPS: the export says where it is
    scene = load_scene(cfg.data)
    box = views_of(scene, georef, first.keep_floaters, ground)
    degree = max(request.sh_degree for request in requests)
    gaussians, how, dropped = baked_for_export(model, scene.train, cfg.render, degree, steps, first.refine_budget,
                                               box)
    context = Context(scene.train[0], cfg.render.background, georef, command, first.tile_size,
                      first.tile_compression, cfg.data.path)
    for name in names:  # before any format's file
        if FORMATS[name].check is not None:
            FORMATS[name].check(gaussians, context)
    lines = [] if len(names) == 1 else [f"one bake for {', '.join(names)}: {len(gaussians)} standard 3D Gaussians, "
                                        f"SH degree {degree}, {how}"]
    lines += [dropped] if dropped else []
    for request in requests:
        lines += _write_baked(request, with_degree(gaussians, request.sh_degree), context,
                              how if len(names) == 1 else None)
    return lines


def _write_baked(request: Request, gaussians, context: Context, how: str | None) -> list[str]:
    """One format of a bake written; its lines (``how``: the bake in words, said by a format exported alone)."""
    spec = FORMATS[request.format]
    if spec.folder:
        return spec.from_bake(gaussians, request.out, context, request.sh_degree)
    path = spec.write(gaussians, request.out / spec.output, context)
    size = f"{path.stat().st_size / 2**20:.1f} MB"
    if how is not None:
        lines = [f"exported {len(gaussians)} standard 3D Gaussians (SH degree {request.sh_degree}, {how}) to {path} "
                 f"({size}), {spec.what}"]
    else:
        lines = [f"{request.format}: {path} ({size}, SH degree {request.sh_degree}), {spec.what}"]
    # opacities (in (0, 1) on StandardGaussians): faint stray Gaussians do not stretch the side-car's box
    sidecar = write_sidecar(path, context.georef, gaussians.means.detach().cpu().numpy(),
                            gaussians.opacities.detach().cpu().numpy())
    if sidecar:
        lines.append(f"georeference (WGS84 origin of the ENU frame, the scene's centre and corners) of {path.name}: "
                     f"{sidecar}")
    return lines
