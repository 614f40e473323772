"""The stages of ``mgs run PHOTOS --out SITE``: sfm, train, eval, export, maps, page, each kept once done.

``SITE/stages.json`` records the photos and each finished stage (with its seconds and the options it ran with);
running again skips the finished stages, redoes those from the first one a changed option affects
(:mod:`momentum_gs.site.options`), ``--from STAGE`` redoes that stage and the ones after it, and a stage that fails leaves the
earlier ones as they were (each writes only its own folder). The folders:

- ``SITE/scene``: the training scene of ``mgs sfm`` (images/, sparse/0, sfm.json, cameras.png, georef.json);
- ``SITE/run``: the training run (a partition of its own when there are several blocks), ``SITE/run/eval``;
- ``SITE/export``: one bake shared by the 3D Tiles, the web page and the PLY (:mod:`momentum_gs.export.shared`);
- ``SITE/maps``: the orthophoto and the surface model of the export's Gaussians (:mod:`momentum_gs.maps.make`);
- ``SITE/index.html``: the page of the site (:mod:`momentum_gs.site.page`).
"""

from __future__ import annotations

import functools
import math
import shutil
import time
from pathlib import Path

import numpy as np

from momentum_gs.config import DataConfig
from momentum_gs.config.device import cores
from momentum_gs.data.footprint import Ground, ground_of
from momentum_gs.data.georef import read_georef
from momentum_gs.data.up import scene_up
from momentum_gs.data.scene import load_scene
from momentum_gs.data.sfm.options import SfmOptions
from momentum_gs.data.sfm.run import run_sfm, summary_lines as sfm_lines
from momentum_gs.errors import UserError
from momentum_gs.eval.evaluate import evaluate_run, summary_lines as eval_lines
from momentum_gs.export.formats import FORMATS
from momentum_gs.export.refine import REFINE_BUDGET_CPU
from momentum_gs.export.shared import export_formats
from momentum_gs.io.checkpoint import latest_checkpoint
from momentum_gs.maps.make import make_maps, summary_lines as maps_lines
from momentum_gs.site.folder import Site
from momentum_gs.trained import run_config
from momentum_gs.site.options import first_changed, options_of
from momentum_gs.site.outputs import outputs
from momentum_gs.site.page import write_page
from momentum_gs.train.request import TrainRequest
from momentum_gs.train.start import start as start_training

STAGES = ("sfm", "train", "eval", "export", "maps", "page")
# What the site's training sets beyond mgs train's defaults (the paper's): a city seen in photos is opaque, and
# its maps need it so (a black background let through in the forest left holes in the surface model)
# the site's training: the surface model's geometry anchored to the SfM points (docs/decisions/0023)
SITE_TRAINING = ("optim.random_background=true", "geometry.preset=maps")
PHOTOS_PER_BLOCK = 150  # --blocks auto: a block per this many photos ...
BLOCK_METRES = 150.0  # ... and at least this wide (georeferenced scenes)
MAX_AUTO_BLOCKS = 8
EXPORTS = ["3dtiles", "html", "ply"]
REFINE_SHARE = 0.2  # with --time, the export's refinement gets this share of the training's budget, at most its default


def auto_blocks(photos: int, scene_dir: Path) -> tuple[int, str]:
    """(blocks, why) for ``--blocks auto``: one per :data:`PHOTOS_PER_BLOCK` photos, each at least
    :data:`BLOCK_METRES` across in a georeferenced scene, at most :data:`MAX_AUTO_BLOCKS`."""
    by_photos = max(1, round(photos / PHOTOS_PER_BLOCK))
    why = f"one per {PHOTOS_PER_BLOCK} photos"
    if read_georef(scene_dir) is not None:
        points = load_scene(DataConfig(path=str(scene_dir)), images=False).points
        if len(points):
            lo, hi = np.quantile(points[:, :2], [0.01, 0.99], axis=0)
            by_area = max(1, math.floor(float(np.prod(hi - lo)) / BLOCK_METRES**2))
            if by_area < by_photos:
                by_photos, why = by_area, f"each block at least {BLOCK_METRES:.0f} m across"
    count = min(MAX_AUTO_BLOCKS, by_photos)
    return count, f"--blocks auto: {why}, at most {MAX_AUTO_BLOCKS}"


def run_stages(photos: Path, site: Site, budget: float | None, blocks: str, first: str | None,
               say=print, gcp: Path | None = None, check: Path | None = None) -> dict:
    """Run the stages not yet done (all from ``first`` on, and from the first stage an option changed since it ran,
    :mod:`momentum_gs.site.options`); returns the record. Each stage's own lines are printed as it goes (``say``).
    ``gcp``, ``check``: the ground control and check points of the SfM (`mgs sfm --gcp`, ``--check``)."""
    if site.root.exists() and not site.root.is_dir():
        raise UserError(f"--out {site.root} is a file; the site needs a folder: give another --out")
    site.root.mkdir(parents=True, exist_ok=True)
    site.load()
    photos = photos.resolve()
    known = site.record.get("photos")
    if known and known != str(photos) and first != "sfm":
        raise UserError(f"{site.root} was made from the photos in {known}, not {photos}: give those, another --out, "
                        "or --from sfm to start again from these")
    site.record["photos"] = str(photos)
    options = options_of(budget, blocks, gcp, check)
    changed = first_changed(STAGES, site.record, options)
    if changed is not None and (first is None or STAGES.index(changed[0]) < STAGES.index(first)):
        first = changed[0]
        say(changed[1])
    if first is not None:
        site.forget(list(STAGES[STAGES.index(first):]))
    redo = first is not None and STAGES.index(first) <= STAGES.index("train")  # not a killed training to resume
    ground = functools.cache(lambda: site_ground(site))  # the ground the photos see: once, for the export and maps
    steps = {"sfm": lambda: _sfm(photos, site, first == "sfm", gcp, check), "train": lambda: _train(site, budget, blocks, redo),
             "eval": lambda: _eval(site), "export": lambda: _export(site, budget, ground()),
             "maps": lambda: _maps(site, ground()), "page": lambda: write_page(site)}
    for stage in STAGES:
        if site.done(stage):
            say(f"{stage}: done before ({site.record['stages'][stage]['seconds']:.0f} s); --from {stage} redoes it")
            continue
        say(f"== {stage}")
        started = time.perf_counter()
        for line in steps[stage]() or []:
            say(line)
        site.mark(stage, time.perf_counter() - started, options, outputs(stage, site))
    return site.record


def _sfm(photos: Path, site: Site, again: bool, gcp: Path | None, check: Path | None) -> list[str]:
    report = run_sfm(photos, site.scene, SfmOptions(overwrite=again or site.scene.exists(),
                                                    gcp=None if gcp is None else str(gcp),
                                                    check=None if check is None else str(check)))
    return sfm_lines(report)


def _train(site: Site, budget: float | None, blocks: str, again: bool) -> list[str]:
    if again and site.run.exists():
        shutil.rmtree(site.run)
    resume = site.run.is_dir() and latest_checkpoint(site.run / "ckpt") is not None
    images = site.scene / "images"
    photos = sum(1 for p in images.iterdir() if p.is_file()) if images.is_dir() else 0
    count, why = (int(blocks), f"--blocks {blocks}") if blocks != "auto" else auto_blocks(photos, site.scene)
    overrides = list(SITE_TRAINING)
    lines = []
    if count > 1:
        active = min(count, cores()[0])
        overrides += [f"blocks.partition=auto:{count}", f"blocks.active={active}"]
        lines.append(f"blocks: {count} ({why}), {active} trained at a time")
    else:  # one block: a process per core on a CPU, each on two views of every step dealt by their cost, which
        # finish closer together than one (momentum_gs.train.views; decision 0017); one process on a GPU
        overrides += ["distributed.view_processes=0", "distributed.views_per_process=2"]
        lines.append(f"blocks: 1 ({why})")
    for line in lines:
        print(line, flush=True)
    if resume:
        print(f"train: {site.run} holds a killed training; resuming it", flush=True)
    start_training(TrainRequest(data=str(site.scene), out=str(site.run), resume=resume,
                                budget=None if resume else budget, overrides=() if resume else tuple(overrides)))
    return []


def site_ground(site: Site) -> Ground | None:
    """The ground the site's training photos see (:class:`~momentum_gs.data.footprint.Ground`), across the scene's
    up (:func:`~momentum_gs.data.up.scene_up`: z in a georeferenced scene); None where the photos tell no up."""
    cfg = run_config(site.run)
    scene = load_scene(cfg.data, images=False)
    up, _ = scene_up(cfg.data.path, scene.train, strict=False)
    return None if up is None else ground_of(scene.train, scene.points, up)


def _maps(site: Site, ground: Ground | None) -> list[str]:
    """The maps of the export's Gaussians (baked once, refined, floaters dropped), or of a bake of their own."""
    shared = site.export / FORMATS["ply"].output
    return maps_lines(make_maps(site.run, site.maps, gaussians=shared if shared.is_file() else None, ground=ground))


def _eval(site: Site) -> list[str]:
    return eval_lines(evaluate_run(site.run), site.run)


def _export(site: Site, budget: float | None, ground: Ground | None) -> list[str]:
    refine_budget = None if budget is None else min(REFINE_BUDGET_CPU, REFINE_SHARE * budget)
    if site.export.exists():
        shutil.rmtree(site.export)
    return export_formats(site.run, EXPORTS, out=site.export, refine_budget=refine_budget, ground=ground)
