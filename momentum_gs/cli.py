"""The ``mgs`` command: train, eval, export, render, distill, mesh, synth, demo, partition, table, config.

Bad input raises :class:`~momentum_gs.errors.UserError`; ``main`` prints it as one ``error:`` line and
exits with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from momentum_gs.data.convert import cli as convert_cli
from momentum_gs.data.sfm.options import ALTITUDE_MODES, EXHAUSTIVE_MAX, EXHAUSTIVE_MAX_GPS, SfmOptions
from momentum_gs import __version__
from momentum_gs.config import RANGES
from momentum_gs.errors import DataWarning, Interrupted, UserError
from momentum_gs.ranges import (AT_LEAST_0, COUNT, DISTILL, FINITE, MAX_BLOCKS, MAX_FRAMES, MAX_WIDTH, MESH, PORT,
                                POSITIVE, SEED, Range, add_number)

# `mgs export`'s refinement on a CPU stops at the steps that fit in this many seconds (500 steps of a 320-px
# aerial scene took about 40 minutes on 2 cores); on a GPU it runs all of them.
REFINE_BUDGET_CPU = 180.0



class _Parser(argparse.ArgumentParser):
    """argparse's parser, with a bad command line said in one ``error:`` line (argparse prints the usage first)."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    """The argument parser of ``mgs`` and its sub-commands."""
    parser = _Parser(prog="mgs", description="Momentum-GS large-scene Gaussian splatting.")
    parser.add_argument("--version", action="version", version=f"momentum_gs {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    parser.commands = sub  # the sub-commands' parsers, by name (``sub.choices``)
    train = sub.add_parser("train", help="train a model on a COLMAP scene")
    train.add_argument("--config", help="YAML file with the settings that differ from the defaults")
    train.add_argument("--data", help="scene folder (images/ + sparse/0, or train/ + val/)")
    train.add_argument("--out", help="run folder (default: runs/<scene name>)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    train.add_argument("--viewer", action="store_true",
                       help="serve the live viewer while training (`mgs view`'s page: every block, the step, loss and "
                            "PSNR, a pause button), and the final model after it until Ctrl-C")
    train.add_argument("--viewer-exit", action="store_true",
                       help="with --viewer: stop the viewer when the training ends")
    add_number(train, "--port", kind=int, allowed=PORT, default=8080, help="the viewer's port (default 8080)")
    train.add_argument("--host", default="127.0.0.1",
                       help="the viewer's address (default 127.0.0.1: this machine only; 0.0.0.0 opens it to the "
                            "network)")
    train.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. optim.steps=2000")
    evaluate = sub.add_parser("eval", help="render and score the held-out views of a run")
    evaluate.add_argument("run_dir")
    evaluate.add_argument("--no-images", action="store_true", help="do not write render/ground-truth PNGs")
    evaluate.add_argument("--device", help="render on this device (default: the run's config)")
    evaluate.add_argument("--maps", action="store_true",
                          help="also write each held-out view's depth and normal maps as pictures (eval/maps/)")
    evaluate.add_argument("--lpips-backbone", help="vgg16-397923af.pth (default: the torch hub cache)")
    evaluate.add_argument("--lpips-heads", help="the lpips package's v0.1 vgg.pth (default: the torch hub cache)")
    evaluate.add_argument("--colour-correction", action="store_true",
                          help="also score after a per-image quadratic colour map (psnr_cc, ssim_cc, lpips_cc)")
    export = sub.add_parser("export", help="write the trained scene as a standard 3DGS PLY (or the Scaffold-GS "
                                           "anchors and decoder)")
    export.add_argument("run_dir")
    export.add_argument("--out", help="output folder (default: RUN_DIR/export; the Scaffold-GS layout goes to "
                                      "RUN_DIR/export/scaffold)")
    export.add_argument("--format", choices=("ply", "splat", "spz", "html", "sog", "scaffold"), default="ply",
                        help="ply: standard 3D Gaussians with SH colours, baked from the training views (what "
                             "3DGS viewers read); splat: the 32-byte-per-Gaussian web-viewer file (colour "
                             "without view dependence); spz: the ply's Gaussians quantised and gzipped (several times "
                             "smaller, read by web viewers); html: scene.html, a viewer page with the scene "
                             "inside that opens in a browser (no network needed); sog: PlayCanvas SOG, made by "
                             "the splat-transform command (Node.js); scaffold: the anchor PLY + decoder.pt")
    export.add_argument("--sh-degree", type=int, choices=(0, 1, 2, 3),
                        help="SH degree of --format ply and spz (default 3) and sog (default 0: splat-transform "
                             "compresses higher degrees slowly on a CPU); splat and html keep degree 0")
    add_number(export, "--refine", kind=int, allowed=COUNT, default=500, metavar="STEPS",
               help="train the baked Gaussians this many steps against the photos and the model's renders "
                    "(default 500, cut to --refine-budget; 0: the bake alone, in seconds)")
    add_number(export, "--refine-budget", kind=float, allowed=AT_LEAST_0, default=None, metavar="SECONDS",
               help="cut the refinement to the steps that fit in this time, measured on its first steps "
                    f"(default {REFINE_BUDGET_CPU:.0f} on a CPU, no limit on a GPU; 0: no limit)")
    video = sub.add_parser("render", help="render a fly-through video (MP4) of a trained run along a camera path")
    video.add_argument("run_dir")
    video.add_argument("--path", required=True, metavar="training|orbit|FILE.json",
                       help="training: through the training cameras; orbit: one turn around the scene; or a "
                            "nerfstudio camera-path JSON in the scene's own frame (see docs/render.md)")
    video.add_argument("--out", required=True, help="the video, .mp4; a generated path is also written beside it "
                                                    "(.json), to edit and pass back as --path")
    add_number(video, "--fps", kind=float, allowed=Range(0, 1000, open_low=True),
               help="frames per second (default 30, or the file's)")
    add_number(video, "--frames", kind=int, allowed=Range(2, MAX_FRAMES),
               help="frames in all (default: 10 per training camera up to 900; 240 for orbit; the file's)")
    video.add_argument("--size", metavar="WxH", help="frame size, even numbers (default: the training images', "
                                                     "or the file's)")
    video.add_argument("--device", help="render on this device (default: the run's config)")
    distill = sub.add_parser("distill", help="distil a trained run into a compact standard 3DGS PLY (a student "
                                             "taught by the model, a noisy and a dropout copy)")
    distill.add_argument("run_dir")
    distill.add_argument("--out", help="output folder (default: RUN_DIR/distill)")
    add_number(distill, "--ratio", kind=float, allowed=DISTILL["ratio"], default=0.15,
               help="the student's first size, a fraction of the baked export's Gaussians (default 0.15)")
    add_number(distill, "--steps", kind=int, allowed=DISTILL["steps"], default=3000,
               help="student training steps (default 3000)")
    distill.add_argument("--sh-degree", type=int, default=3, choices=(0, 1, 2, 3), help="the student's SH degree")
    distill.add_argument("--teachers", default="model,noise,dropout",
                         help="comma-separated teachers fused into the pseudo-labels (model, noise, dropout)")
    add_number(distill, "--lambda-structure", kind=float, allowed=DISTILL["lambda_structure"], default=0.0,
               help="weight of the voxel-histogram structure term (default 0, off: on the demo city "
                    "weights 0.01, 0.1 and 1 cost 0.13, 0.22 and 0.59 dB)")
    add_number(distill, "--lambda-distill", kind=float, allowed=DISTILL["lambda_distill"], default=1.0,
               help="weight of the pseudo-label term")
    add_number(distill, "--seed", kind=int, allowed=DISTILL["seed"], default=0)
    distill.add_argument("--device", help="train on this device (default: the run's config)")
    mesh = sub.add_parser("mesh", help="a coloured triangle mesh of a trained run: rendered depths fused into a "
                                       "TSDF block by block, stitched into one PLY (docs/surfaces.md)")
    mesh.add_argument("run_dir")
    mesh.add_argument("--out", required=True, help="the mesh, .ply (a summary .json is written beside it)")
    add_number(mesh, "--voxel", kind=float, allowed=MESH["voxel"],
               help="TSDF voxel in world units (default: the region's longest "
                    "horizontal side / 400)")
    add_number(mesh, "--trunc", kind=float, allowed=MESH["trunc_voxels"], default=2.0,
               help="TSDF truncation in voxels (default 2)")
    mesh.add_argument("--depth", default="median", choices=("median", "mean"),
                      help="which rendered depth to fuse: median (where transmittance crosses 0.5) or mean")
    mesh.add_argument("--blocks", action="store_true", help="also write each block's piece as OUT_block<n>.ply")
    add_number(mesh, "--threshold", kind=float, allowed=POSITIVE,
               help="F-score distance against a ground-truth mesh, world units (default 2 voxels)")
    mesh.add_argument("--device", help="render and fuse on this device (default: the run's config)")
    sfm = sub.add_parser("sfm", help="photos (or a video) to a training scene: COLMAP's SfM via pycolmap, "
                         "georeferenced in level ENU metres when the photos carry GPS")
    sfm.add_argument("photos", nargs="?", help="folder of photos (JPEG, PNG, TIFF; subfolders too)")
    sfm.add_argument("--out", required=True,
                     help="scene folder to write (images/ + sparse/0, sfm.json, cameras.png)")
    sfm.add_argument("--matcher", default="auto", help="auto, exhaustive, sequential, spatial or vocab (default "
                     f"auto: with GPS exhaustive up to {EXHAUSTIVE_MAX_GPS} photos, then spatial; without, "
                     f"exhaustive up to {EXHAUSTIVE_MAX}, then sequential)")
    sfm.add_argument("--camera-model", default="OPENCV", help="COLMAP camera model (default OPENCV; SIMPLE_RADIAL, ...)")
    cams = sfm.add_mutually_exclusive_group()
    cams.add_argument("--single-camera", dest="camera_mode", action="store_const", const="single",
                      help="one camera for all photos (default: one per EXIF camera and image size)")
    cams.add_argument("--per-image", dest="camera_mode", action="store_const", const="per-image",
                      help="one camera per photo (zooming lenses)")
    add_number(sfm, "--max-size", kind=int, allowed=Range(64, MAX_WIDTH), default=SfmOptions.max_size,
               help=f"longest image side for feature extraction, px (default {SfmOptions.max_size})")
    sfm.add_argument("--gps-altitude", default="auto", choices=ALTITUDE_MODES,
                     help="the photos' GPS altitude: auto (default) uses it only where it agrees with the level the "
                          "photos show, use trusts it, ignore levels by the photos alone")
    sfm.add_argument("--keep-largest", action="store_true",
                     help="a capture in disconnected parts: write the largest part (default: refuse)")
    sfm.add_argument("--overwrite", action="store_true",
                     help="replace a scene already in --out, once this run has succeeded (default: refuse)")
    sfm.add_argument("--video", help="a video to sample into frames instead of PHOTOS")
    add_number(sfm, "--fps", kind=float, allowed=Range(0, 1000, open_low=True), default=2.0,
               help="frames a second taken from --video (default 2)")
    sfm.add_argument("--vocab-tree", help="COLMAP vocabulary tree file, for --matcher vocab (no default)")
    add_number(sfm, "--threads", kind=int, allowed=Range(-1, 4096), default=-1,
               help="CPU threads for COLMAP (default -1: all)")
    view = sub.add_parser("view", help="a live web viewer of a trained run: fly through it, switch blocks on and "
                                       "off, see the cameras and the cells")
    view.add_argument("run_dir")
    add_number(view, "--port", kind=int, allowed=PORT, default=8080, help="port (default 8080)")
    view.add_argument("--host", default="127.0.0.1",
                      help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 opens it to the "
                           "network)")
    view.add_argument("--device", help="render on this device (default: the run's config)")
    synth = sub.add_parser("synth", help="generate the synthetic aerial city (Mill-19 layout)")
    synth.add_argument("out")
    synth.add_argument("--preset", default="demo", help="tiny, demo, small or city8")
    add_number(synth, "--seed", kind=int, allowed=SEED, default=0)
    synth.add_argument("--vary-exposure", action="store_true", help="random per-image exposure and white balance")
    demo = sub.add_parser("demo", help="synthesize a city, train, evaluate; prints the results.json path")
    demo.add_argument("--data", default="data/synthetic_demo", help="where the synthetic scene is (made if missing)")
    demo.add_argument("--out", default="runs/demo", help="run folder")
    demo.add_argument("--config", default="demo.yaml",
                      help="a config in configs/ (default: Momentum-GS, 4 blocks, 2 active; "
                           "demo_single.yaml: one block)")
    demo.add_argument("--preset", default="demo", help="the synthetic scene made when --data is missing: tiny, "
                                                       "demo, small or city8")
    demo.add_argument("overrides", nargs="*", help="dotted config overrides")
    part = sub.add_parser("partition", help="split a scene into blocks; writes the partition file and a map")
    part.add_argument("--data", required=True, help="scene folder")
    part.add_argument("--out", required=True, help="partition file to write (.npz); the map goes beside it (.png)")
    add_number(part, "--blocks", kind=int, allowed=Range(1, MAX_BLOCKS),
               help="number of blocks (automatic box and balanced grid)")
    add_number(part, "--grid", kind=int, allowed=Range(1, MAX_BLOCKS), nargs=3, metavar=("X", "Y", "Z"),
               help="block grid instead of --blocks")
    add_number(part, "--box", kind=float, allowed=FINITE, nargs=6, metavar="V",
               help="scene box: xmin ymin zmin xmax ymax zmax")
    add_number(part, "--margin", kind=float, allowed=RANGES["partition.margin"],
               help="extra points around a cell, fraction of its size (0.5)")
    add_number(part, "--coverage", kind=float, allowed=RANGES["partition.coverage"],
               help="a camera joins a block owning at least this fraction of its view (0.1; 1 = centre only)")
    part.add_argument("--uniform", action="store_true", help="uniform cells in contracted space (the reference)")
    part.add_argument("--coarse", metavar="RUN", help="a trained run of the scene: cameras join a block when "
                      "removing its anchors changes their render (1 - SSIM > --ssim-threshold), as the reference")
    add_number(part, "--ssim-threshold", kind=float, allowed=Range(0, 1, open_low=True, open_high=True),
               default=0.05,
               help="with --coarse (reference: 0.03-0.05)")
    part.add_argument("--cameras-from", metavar="NPY", help="the reference's data_partitions/block{n}_ssim{t}.npy: "
                      "take its camera assignment over (with the paper's --box and --grid, and --uniform)")
    part.add_argument("--config", help="YAML config: its data section reads the scene, its partition section "
                      "sets the defaults")
    part.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. data.downsample=4")
    table = sub.add_parser("table", help="tables (ours beside the paper's) and plots of evaluated runs")
    table.add_argument("run_dirs", nargs="+", help="run folders, each evaluated by `mgs eval`")
    table.add_argument("--out", required=True, help="folder for results.md/.csv and the PNG plots")
    table.add_argument("--ablation", action="store_true", help="also the ablation table of the runs a..f")
    table.add_argument("--label", action="append", default=[], metavar="RUN=ROW",
                       help="ablation row of a run folder whose name does not start with it, e.g. full=f")
    convert_cli.add_parser(sub)
    config = sub.add_parser("config", help="print the resolved config (defaults, a file, overrides)")
    config.add_argument("--config")
    config.add_argument("--explain", nargs="?", const="", metavar="KEY",
                        help="each key (or those of KEY, a key or a section) with its type, allowed values, default "
                             "and meaning")
    config.add_argument("overrides", nargs="*")
    return parser


def cmd_train(args) -> None:
    """``mgs train``: train a run (or continue one with --resume)."""
    from momentum_gs.train.run import describe, train_from_args

    viewer = (args.host, args.port) if args.viewer else None
    train_from_args(args.config, args.data, args.out, args.overrides, resume=args.resume, viewer=viewer,
                    keep_viewer=not args.viewer_exit, report=lambda summary: print(describe(summary)))


def cmd_table(args) -> None:
    """``mgs table``: tables and plots of evaluated runs beside the paper's numbers."""
    from momentum_gs.eval.table import run

    run(args)


def cmd_eval(args) -> None:
    """``mgs eval``: score the held-out views of a run."""
    from momentum_gs.config import resolve_device
    from momentum_gs.eval.evaluate import evaluate_run, summary_lines

    device = resolve_device(args.device) if args.device else None
    given = {"lpips_backbone": args.lpips_backbone, "lpips_heads": args.lpips_heads,
             "colour_correction": args.colour_correction or None}  # None: keep the run's setting
    metrics = {name: value for name, value in given.items() if value is not None}
    results = evaluate_run(args.run_dir, save_images=not args.no_images, device=device, metrics=metrics,
                           maps=args.maps)
    print("\n".join(summary_lines(results, args.run_dir)))


def cmd_export(args) -> None:
    """``mgs export``: the trained scene as a standard 3DGS PLY, or in the Scaffold-GS layout."""
    from momentum_gs.io.run_folder import load_run
    from momentum_gs.model.gaussian_scene import GaussianScene

    run_dir = Path(args.run_dir)
    cfg, model, _ = load_run(run_dir)
    if not isinstance(model, GaussianScene):
        raise UserError("this run trained independent decoders per block; both export layouts need one decoder")
    if args.format == "scaffold":
        from momentum_gs.io.ply import export_scene

        out = export_scene(model, cfg.model, args.out or run_dir / "export" / "scaffold")
        print(f"exported the merged model, {model.anchors.num_anchors} anchors, in the Scaffold-GS layout: "
              f"{out / 'point_cloud.ply'} and {out / 'decoder.pt'}")
        return
    from momentum_gs.data.georef import ply_comment, read_georef, write_sidecar
    from momentum_gs.data.images import ImageLoader
    from momentum_gs.data.scene import load_scene
    from momentum_gs.io.bake import bake, save_standard_ply

    out = Path(args.out or run_dir / "export")
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file; the export needs a folder (--out)")
    command = None
    if args.format == "sog":
        from momentum_gs.io.web import splat_transform_command

        command = splat_transform_command()  # before baking: a missing tool is said at once
    degree = 0 if args.format in ("splat", "html") else args.sh_degree  # those two keep no view dependence
    if degree is None:
        degree = 0 if args.format == "sog" else 3
    georef = read_georef(Path(cfg.data.path))  # a scene from `mgs sfm` with GPS: the export says where it is
    cameras = load_scene(cfg.data).train
    gaussians = bake(model, cameras, cfg.render, degree=degree)
    how = "baked from the training views"
    if args.refine:
        from momentum_gs.train.distill import refine

        budget = args.refine_budget if args.refine_budget is not None else (
            REFINE_BUDGET_CPU if model.device.type == "cpu" else 0)
        gaussians, steps = refine(model, gaussians, cameras, ImageLoader(cameras), cfg.render, args.refine,
                                  budget_s=budget or None)
        how += f", refined {steps} steps" + (f" (of {args.refine}, in {budget:.0f} s)" if steps < args.refine else "")
    if args.format == "splat":
        from momentum_gs.io.splat import save_splat

        path, what = save_splat(gaussians, out / "scene.splat"), "the .splat file web viewers read"
    elif args.format == "spz":
        from momentum_gs.io.spz import save_spz

        path, what = save_spz(gaussians, out / "scene.spz"), "the .spz file web viewers read"
    elif args.format == "html":
        from momentum_gs.io.web import save_viewer

        path = save_viewer(gaussians, cameras[0], cfg.render.background, out / "scene.html")
        what = "a page that shows the scene in a web browser"
    elif args.format == "sog":
        from momentum_gs.io.web import save_with_splat_transform

        path, what = save_with_splat_transform(command, gaussians, out / "scene.sog"), "PlayCanvas's compressed format"
    else:
        path = save_standard_ply(gaussians, out / "point_cloud.ply", [ply_comment(georef)] if georef else [])
        what = "the layout 3DGS viewers read"
    print(f"exported {len(gaussians)} standard 3D Gaussians (SH degree {degree}, {how}) to {path} "
          f"({path.stat().st_size / 2**20:.1f} MB), {what}")
    # opacities (in (0, 1) on StandardGaussians): faint stray Gaussians do not stretch the side-car's box
    sidecar = write_sidecar(path, georef, gaussians.means.detach().cpu().numpy(),
                            gaussians.opacities.detach().cpu().numpy())
    if sidecar:
        print(f"georeference (WGS84 origin of the ENU frame, the scene's centre and corners): {sidecar}")


def cmd_render(args) -> None:
    """``mgs render``: a fly-through video of a trained run along a camera path."""
    from momentum_gs.config import resolve_device
    from momentum_gs.eval.video import render_video

    device = resolve_device(args.device) if args.device else None
    result = render_video(args.run_dir, args.path, args.out, fps=args.fps, frames=args.frames, size=args.size,
                          device=device)
    print(result.summary())


def cmd_view(args) -> None:
    """``mgs view``: serve the live viewer of a trained run until Ctrl-C or SIGTERM."""
    import time

    from momentum_gs.config import resolve_device
    from momentum_gs.render.kernels import kernels_in_use
    from momentum_gs.view.server import Viewer, check_port, import_viser, serve_until_interrupted, warn_if_open
    from momentum_gs.view.sources import RunSource

    started = time.perf_counter()
    check_port(args.host, args.port)  # before the model loads: a busy port is one line at once
    import_viser()
    source = RunSource(args.run_dir, resolve_device(args.device) if args.device else None)
    print(kernels_in_use(source.device), flush=True)  # builds the CPU kernels before the first frame
    viewer = Viewer(source, args.host, args.port, started=started)
    warn_if_open(args.host)
    serve_until_interrupted(viewer, f"viewer of {args.run_dir} (step {source.step}, {source.num_blocks} block(s)) "
                                    f"at {viewer.url}; Ctrl-C to stop")


def cmd_synth(args) -> None:
    """``mgs synth``: generate the synthetic city."""
    from momentum_gs.data.synthetic import PRESETS, make_synthetic_scene

    if args.preset not in PRESETS:
        raise UserError(f"unknown preset '{args.preset}' (choose from {', '.join(PRESETS)})")
    from momentum_gs.train.progress import counter_bar

    out = make_synthetic_scene(Path(args.out), args.preset, seed=args.seed, vary_exposure=args.vary_exposure,
                               progress=counter_bar(f"synth {args.preset}", "view"))
    print(f"synthetic scene ({args.preset}) written to {out}\nnext: mgs train --data {out} --out runs/{out.name} "
          f"(or mgs partition --data {out} --out runs/{out.name}/partition.npz --blocks 8 for blocks)")


def cmd_sfm(args) -> None:
    """``mgs sfm``: structure from motion on a folder of photos, into a training scene."""
    from momentum_gs.data.sfm.run import run_lines, run_sfm

    if (args.photos is None) == (args.video is None):
        raise UserError("give either a folder of photos (mgs sfm PHOTOS --out DATA) or --video FILE")
    opts = SfmOptions(matcher=args.matcher, camera_model=args.camera_model, camera_mode=args.camera_mode or "auto",
                      max_size=args.max_size, vocab_tree=args.vocab_tree, threads=args.threads,
                      gps_altitude=args.gps_altitude, keep_largest=args.keep_largest, overwrite=args.overwrite)
    report = run_sfm(Path(args.photos) if args.photos else None, Path(args.out), opts,
                     video=Path(args.video) if args.video else None, fps=args.fps)
    print("\n".join(run_lines(report, Path(args.out))))


def cmd_partition(args) -> None:
    """``mgs partition``: partition a scene into blocks and draw the map."""
    from momentum_gs.config import load_config
    from momentum_gs.partition.run import partition_main

    cfg = load_config(args.config, args.overrides)
    cfg.data.path = args.data
    part = cfg.partition  # the config's settings, unless the command line gives them
    blocks = args.blocks or part.blocks or None
    grid = args.grid or (part.grid if any(part.grid) else None)
    box = args.box or (part.box if any(part.box) else None)
    if (blocks is None) == (grid is None) and box is None:
        raise UserError("give the number of blocks (--blocks N) or the grid (--grid X Y Z), "
                        "on the command line or as partition.blocks / partition.grid in the config")
    print(partition_main(cfg.data, args.out, num_blocks=blocks, block_dim=grid,
                         box=None if box is None else (tuple(box[:3]), tuple(box[3:])),
                         margin=part.margin if args.margin is None else args.margin,
                         coverage_threshold=part.coverage if args.coverage is None else args.coverage,
                         balance=False if args.uniform else None, coarse_run=args.coarse,
                         ssim_threshold=args.ssim_threshold, camera_matrix=args.cameras_from))
    print(f"next: mgs train --config configs/ablation/f_full8.yaml --data {cfg.data.path} --out RUN "
          f"blocks.partition={args.out}")


def cmd_demo(args) -> None:
    """``mgs demo``: synthesize, train, evaluate; the results path is the last line."""
    from momentum_gs.train.run import demo

    print(demo(Path(args.data), Path(args.out), args.overrides, args.config, args.preset))


def cmd_config(args) -> None:
    """``mgs config``: print the resolved config."""
    import yaml

    from momentum_gs.config import explain, load_config, to_dict

    if args.explain is not None:
        print(explain(args.explain))
        return
    print(yaml.safe_dump(to_dict(load_config(args.config, args.overrides)), sort_keys=False), end="")


def cmd_mesh(args) -> None:
    """``mgs mesh``: a triangle mesh of a trained run."""
    from momentum_gs.config import resolve_device
    from momentum_gs.mesh.extract import MeshSettings, extract_mesh, summary_lines

    settings = MeshSettings(voxel=args.voxel, trunc_voxels=args.trunc, depth=args.depth)
    device = resolve_device(args.device) if args.device else None
    summary = extract_mesh(Path(args.run_dir), Path(args.out), settings, block_meshes=args.blocks, device=device,
                           threshold=args.threshold)
    print("\n".join(summary_lines(summary)))


def cmd_distill(args) -> None:
    """``mgs distill``: a compact standard 3DGS student of a trained run (Distilled-3DGS)."""
    from momentum_gs.config import resolve_device
    from momentum_gs.train.distill import DistillConfig, distill_run, summary_lines

    cfg = DistillConfig(ratio=args.ratio, steps=args.steps, sh_degree=args.sh_degree,
                        teachers=tuple(t.strip() for t in args.teachers.split(",") if t.strip()),
                        lambda_structure=args.lambda_structure, lambda_distill=args.lambda_distill, seed=args.seed)
    out = Path(args.out or Path(args.run_dir) / "distill")
    device = resolve_device(args.device) if args.device else None
    summary = distill_run(args.run_dir, out, cfg, device)
    print("\n".join(summary_lines(summary, out)))


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "export": cmd_export, "synth": cmd_synth, "demo": cmd_demo,
            "config": cmd_config, "partition": cmd_partition, "table": cmd_table, "render": cmd_render,
            "distill": cmd_distill, "mesh": cmd_mesh, "sfm": cmd_sfm, "view": cmd_view,
            "convert": convert_cli.run}


def _one_line_warnings(fallback):
    """A ``warnings.showwarning`` that prints a :class:`DataWarning` (input read, but not as it was written) as one
    ``warning:`` line and passes other warnings to ``fallback``."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if issubclass(category, DataWarning):
            print(f"warning: {message}", file=sys.stderr, flush=True)
        else:
            fallback(message, category, filename, lineno, file, line)

    return show


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``mgs``; returns the exit status."""
    try:
        parser = _parser()
        args, unknown = parser.parse_known_args(argv)
        if unknown:  # said by the sub-command's parser, which names its own --help
            parser.commands.choices[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    except SystemExit as exc:  # --help, --version, or a bad command line (one line said already)
        return exc.code if isinstance(exc.code, int) else 2
    try:
        with warnings.catch_warnings():  # restores the warning printer after the command
            warnings.showwarning = _one_line_warnings(warnings.showwarning)
            COMMANDS[args.command](args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Interrupted as exc:
        print(str(exc), file=sys.stderr)
        return 130
    except KeyboardInterrupt:  # outside training, or a second Ctrl-C while the checkpoint is written
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
