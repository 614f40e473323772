"""``mgs eval RUN_DIR``: render the held-out views of a trained run and score them.

Writes ``RUN_DIR/eval/results.json`` (means over views), ``per_view.json`` and side-by-side
render | ground-truth PNGs in ``RUN_DIR/eval/renders/``. Scores follow the paper's tables (SPEC §3.5):
PSNR and SSIM on [0, 1] images, LPIPS-VGG v0.1 fed [0, 1] images as they are (null, with a note saying
which file is missing, when its weights are not on this machine), and with ``metrics.colour_correction``
the same three after a per-image quadratic colour map, as ``*_cc``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from momentum_gs.config import MetricsConfig
from momentum_gs.data.images import ImageLoader
from momentum_gs.data.scene import load_scene
from momentum_gs.errors import UserError
from momentum_gs.eval.colour import colour_correct
from momentum_gs.eval.lpips import LPIPSWeightsMissing, load_lpips
from momentum_gs.eval.results_file import read_results
from momentum_gs.io.atomic import atomic_write_text
from momentum_gs.io.folders import written_whole
from momentum_gs.io.run_folder import RunFolder
from momentum_gs.trained import load_run
from momentum_gs.losses import psnr, ssim
from momentum_gs.model.gaussian_scene import resolve_backend
from momentum_gs.partition.assign import view_coverage
from momentum_gs.partition.partition import Partition

STRIP_VIEWS = 4  # held-out views shown in eval/strip.png
WARMUP_VIEWS = 5  # views excluded from the timing (allocator and cache warm-up), as the paper's FPS


def save_image(image: torch.Tensor, path: Path) -> None:
    """Write an [H, W, 3] RGB image in [0, 1] as a PNG (folders created)."""
    pixels = image.clamp(0, 1).mul(255).round().byte().cpu().numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))


def write_strip(columns: list[tuple[torch.Tensor, str, float]], path: Path, min_width: int = 200) -> np.ndarray:
    """``eval/strip.png``: one column per view, its render over its ground truth ([2H, W, 3] in [0, 1]), under
    a header naming the view and its PSNR; small views are enlarged (nearest pixel) so the text fits. Returns
    the picture (uint8 RGB)."""
    scale = max(1, -(-min_width // columns[0][0].shape[1]))
    font, size, ink = cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255)
    header = 34
    tiles = []
    for image, name, value in columns:
        pixels = image.clamp(0, 1).mul(255).round().byte().numpy()
        pixels = cv2.resize(pixels, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        tile = np.zeros((header + pixels.shape[0], pixels.shape[1] + 2, 3), np.uint8)
        tile[header:, :-2] = pixels
        label = name if len(name) <= 24 else "..." + name[-21:]
        cv2.putText(tile, label, (4, 13), font, size, ink, 1, cv2.LINE_AA)
        cv2.putText(tile, f"PSNR {value:.2f} dB", (4, 28), font, size, ink, 1, cv2.LINE_AA)
        tiles.append(tile)
    picture = np.concatenate([np.pad(t, ((0, 0), (0, max(u.shape[1] for u in tiles) - t.shape[1]), (0, 0)))
                              for t in tiles], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    return picture


def save_side_by_side(render: torch.Tensor, gt: torch.Tensor, path: Path) -> None:
    """Write ``render | gt`` ([H, W, 3] in [0, 1]) as one PNG."""
    save_image(torch.cat([render, gt], dim=1), path)


@torch.no_grad()
def evaluate_run(run_dir: str | Path, save_images: bool = True, device: torch.device | None = None,
                 metrics: dict | None = None, maps: bool = False) -> dict:
    """Render and score every held-out view of ``run_dir``; returns (and writes) the results dictionary.

    ``metrics`` overrides fields of the run's ``metrics`` section (where the LPIPS weights are, colour
    correction), e.g. ``{"colour_correction": True}``. ``maps`` also writes each view's depth and normal
    maps as ``eval/maps/NAME.png`` (:func:`map_picture`).
    """
    run_dir = Path(run_dir)
    cfg, model, step = load_run(run_dir, device)
    metrics = dataclasses.replace(cfg.metrics, **(metrics or {}))
    scene = load_scene(cfg.data)
    if not scene.test:
        raise UserError(f"the scene {cfg.data.path} has no held-out views to evaluate")
    model.eval()
    lpips, lpips_note = _lpips(metrics, model.device)
    folder, names = RunFolder(run_dir), {f"{Path(camera.name).stem}.png" for camera in scene.test}
    with contextlib.ExitStack() as whole:  # each folder of pictures replaces the last whole, once complete
        renders = (whole.enter_context(written_whole(folder.render_picture("x").parent, "the held-out renders",
                                                     names)) if save_images else None)
        pictures = (whole.enter_context(written_whole(folder.map_picture("x").parent, "the held-out maps", names))
                    if maps else None)
        per_view, seconds, strip = _evaluate_views(model, cfg, scene, lpips, metrics.colour_correction, renders,
                                                   pictures)
    results = _results(per_view, seconds, model, step, lpips, lpips_note, run_dir)
    if strip:  # renders on top, ground truth below, a few held-out views side by side
        write_strip(strip, RunFolder(run_dir).strip)
    if cfg.blocks.partition:
        results.update(per_block(per_view, scene, cfg.blocks.partition))
    atomic_write_text(RunFolder(run_dir).results, json.dumps(results, indent=2) + "\n")
    atomic_write_text(RunFolder(run_dir).per_view, json.dumps(per_view, indent=2) + "\n")
    return results


def _evaluate_views(model, cfg, scene, lpips, colour_correction: bool, renders: Path | None,
                    pictures: Path | None) -> tuple[list[dict], list[float], list[tuple[torch.Tensor, str, float]]]:
    """Render, time and score every held-out view, writing its render beside its photo into ``renders`` and its
    maps into ``pictures`` (None: not written): (the per-view scores, the render seconds, the strip's first
    ``STRIP_VIEWS`` columns)."""
    maps, save_images = pictures is not None, renders is not None
    loader = ImageLoader(scene.test, cache=False, prefetch=cfg.data.prefetch)
    per_view, seconds, strip = [], [], []
    if model.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(model.device)
    views = loader.iterate(range(len(scene.test)), model.device)
    depth_dir = ground_truth_depths(scene.root)
    extras = _render_extras(cfg.render.backend, model.device, depth_dir, maps)
    if len(scene.test) <= WARMUP_VIEWS:  # too few views to drop the first renders from the timing: warm up first
        warm = scene.test[0].to(model.device)
        for _ in range(WARMUP_VIEWS):
            model.render(warm, cfg.render, appearance_index=None, extras=extras)
    for index, gt in tqdm(views, total=len(scene.test), desc="eval", unit="view"):
        camera = scene.test[index].to(model.device)  # copied before the clock starts
        started = _synchronized_time(gt.device)
        view = model.render(camera, cfg.render, appearance_index=None, extras=extras)
        seconds.append(_synchronized_time(gt.device) - started)
        image, entry = _view_scores(view, camera.name, gt, lpips, depth_dir)
        per_view.append(entry)
        if maps:
            _write_maps(view.output, pictures / f"{Path(camera.name).stem}.png")
        if colour_correction:
            entry.update({f"{k}_cc": v for k, v in scores(colour_correct(image, gt), gt, lpips).items()})
        if save_images:
            save_side_by_side(image, gt, renders / f"{Path(camera.name).stem}.png")
            if len(strip) < STRIP_VIEWS:
                strip.append((torch.cat([image, gt], dim=0).cpu(), camera.name, entry["psnr"]))
    return per_view, seconds, strip


def _render_extras(backend: str, device: torch.device, depth_dir: Path | None, maps: bool) -> tuple[str, ...]:
    """The extra channels each held-out render needs: depth for a ground truth or the maps, normal for the maps,
    the median depth too where there is a ground truth and the backend has it."""
    extras = ("depth", "normal") if maps else ("depth",) if depth_dir is not None else ()
    if depth_dir is not None and resolve_backend(backend, device) == "builtin":
        extras += ("median_depth",)  # only the builtin backend has it
    return extras


def _view_scores(view, name: str, gt: torch.Tensor, lpips, depth_dir: Path | None) -> tuple[torch.Tensor, dict]:
    """(the render clamped to [0, 1], its entry of ``per_view.json``: scores, Gaussians and depth errors)."""
    image = view.output.image.clamp(0, 1)
    entry = {"name": name, **scores(image, gt, lpips), "num_gaussians": view.num_gaussians}
    if depth_dir is not None:
        entry.update(depth_errors(view.output, depth_dir / f"{Path(name).stem}.npy"))
    return image, entry


def _write_maps(output, path: Path) -> None:
    """The view's depth and normal maps (:func:`map_picture`) as the PNG ``path``."""
    picture = map_picture(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), picture[..., ::-1])


def _results(per_view: list[dict], seconds: list[float], model, step: int, lpips, lpips_note: str | None,
             run_dir: Path) -> dict:
    """``results.json``: :func:`summarize`, the LPIPS convention or why it is missing, the peak render memory."""
    results = summarize(per_view, seconds, model, step)
    results["lpips_convention"] = lpips.convention if lpips is not None else None
    if lpips_note:
        results["lpips_note"] = lpips_note
        results["lpips_note_said_before"] = _said_before(RunFolder(run_dir).results, lpips_note)
    results["peak_render_memory_mb"] = (torch.cuda.max_memory_allocated(model.device) / 2**20
                                        if model.device.type == "cuda" else None)  # CPU: not measured
    return results


def scores(image: torch.Tensor, gt: torch.Tensor, lpips) -> dict:
    """PSNR, SSIM and (when its weights are loaded) LPIPS of one [H, W, 3] render against its ground truth."""
    return {"psnr": float(psnr(image, gt)), "ssim": float(ssim(image, gt)),
            "lpips": None if lpips is None else float(lpips(image, gt))}


def depth_picture(output, near: float | None = None, far: float | None = None) -> np.ndarray:
    """[H, W, 3] uint8 RGB of the depth (depth / alpha, near = red, far = blue, from ``near`` to ``far``, by
    default the 2nd and 98th percentile of the covered pixels); black where alpha ≤ 0.5."""
    covered = (output.alpha[..., 0] > 0.5).detach().cpu().numpy()
    depth = output.normalised_depth()[..., 0].detach().cpu().numpy()
    if near is None or far is None:
        lo, hi = np.percentile(depth[covered], [2, 98]) if covered.any() else (0.0, 1.0)
    lo, hi = near if near is not None else lo, far if far is not None else hi
    scaled = np.clip((depth - lo) / max(hi - lo, 1e-12), 0, 1)
    coloured = cv2.applyColorMap(np.round(255 * (1 - scaled)).astype(np.uint8), cv2.COLORMAP_TURBO)[..., ::-1]
    coloured[~covered] = 0
    return np.ascontiguousarray(coloured)


def normal_picture(output) -> np.ndarray:
    """[H, W, 3] uint8 RGB of the camera-space normal (n / alpha mapped from [-1, 1] to [0, 255]: x → red,
    y → green, z → blue); black where alpha ≤ 0.5."""
    alpha = output.alpha[..., 0].detach().cpu()
    normal = (output.normal.detach().cpu() / alpha.clamp(min=1e-10)[..., None]).clamp(-1, 1).numpy()
    normal = np.round((normal * 0.5 + 0.5) * 255).astype(np.uint8)
    normal[~(alpha > 0.5).numpy()] = 0
    return normal


def map_picture(output) -> np.ndarray:
    """[H, 2W, 3] uint8 RGB: :func:`depth_picture` beside :func:`normal_picture`."""
    return np.ascontiguousarray(np.concatenate([depth_picture(output), normal_picture(output)], axis=1))


def ground_truth_depths(root: Path) -> Path | None:
    """The folder of held-out ground-truth depth maps (``val/depths`` or ``test/depths``, one ``NAME.npy`` per
    view, as ``mgs synth`` writes them), or None."""
    return next((root / split / "depths" for split in ("val", "test") if (root / split / "depths").is_dir()), None)


def depth_errors(output, path: Path) -> dict:
    """Mean absolute and relative error of the rendered depth (depth / alpha, where alpha > 0.5), and of the
    median depth when the render has it, against the ground-truth map at ``path`` (float32 camera-space z in
    model units, NaN where there is none); {} without a map."""
    if not path.is_file():
        return {}
    truth = np.load(path, allow_pickle=False).astype(np.float32)
    height, width = output.alpha.shape[:2]
    if truth.shape != (height, width):
        truth = cv2.resize(truth, (width, height), interpolation=cv2.INTER_NEAREST)
    truth = torch.from_numpy(truth)
    mask = torch.isfinite(truth) & (output.alpha[..., 0].detach().cpu() > 0.5) & (truth > 0)
    if not mask.any():
        return {}
    errors = {}
    for prefix, rendered in (("depth", output.normalised_depth()), ("median_depth", output.median_depth)):
        if rendered is not None:
            error = (rendered[..., 0].detach().cpu()[mask] - truth[mask]).abs()
            errors.update({f"{prefix}_abs_error": float(error.mean()),
                           f"{prefix}_rel_error": float((error / truth[mask]).mean())})
    return errors


def _lpips(metrics: MetricsConfig, device: torch.device):
    """(the LPIPS-VGG network, None) or (None, a note saying which weight file to put where)."""
    try:
        return load_lpips(metrics.lpips_backbone or None, metrics.lpips_heads or None, device,
                          allow_download=metrics.lpips_download), None
    except LPIPSWeightsMissing as missing:
        return None, str(missing)


def _said_before(results_path: Path, note: str) -> bool:
    """Whether the run's previous evaluation (its ``results.json``) carried the same LPIPS note."""
    try:
        return results_path.is_file() and read_results(results_path).get("lpips_note") == note
    except UserError:  # a damaged one is written again: the whole note is said again
        return False


def summarize(per_view: list[dict], seconds: list[float], model, step: int) -> dict:
    """Means over views and the model's size, as written to ``results.json``. The FPS is the paper's: one over
    the mean render time of the views after the first ``WARMUP_VIEWS`` (all views, when there are no more than
    that: ``evaluate_run`` then renders ``WARMUP_VIEWS`` times before the first timed view)."""
    timed = seconds[WARMUP_VIEWS:] if len(seconds) > WARMUP_VIEWS else seconds

    def mean(key: str) -> float | None:
        values = [v[key] for v in per_view if v.get(key) is not None]
        return float(np.mean(values)) if values else None

    results = {"psnr": mean("psnr"), "ssim": mean("ssim"), "lpips": mean("lpips")}
    for key in ("depth_abs_error", "depth_rel_error", "median_depth_abs_error", "median_depth_rel_error"):
        if any(key in v for v in per_view):
            results[key] = mean(key)
    if "psnr_cc" in per_view[0]:
        results.update({"psnr_cc": mean("psnr_cc"), "ssim_cc": mean("ssim_cc"), "lpips_cc": mean("lpips_cc")})
    return {
        **results,
        "num_test_views": len(per_view),
        "num_anchors": model.num_anchors,
        "num_gaussians": int(np.mean([v["num_gaussians"] for v in per_view])),
        "storage_mb": sum(t.numel() * t.element_size() for t in model.state_dict().values()) / 2**20,
        "seconds_per_view": float(np.mean(timed)),
        "fps": float(1.0 / max(np.mean(timed), 1e-12)),
        "step": step,
    }


def per_block(per_view: list[dict], scene, partition_path: str, share: float = 0.1) -> dict:
    """Held-out scores by block, and across block boundaries (are there seams?).

    ``per_block``: mean PSNR/SSIM of the views grouped by the block their camera centre lies in.
    ``seams``: the views whose content is shared by more than one block (each owning at least ``share`` of
    it, by the partition's projected-point coverage) against the views that stay inside one block.
    """
    partition = Partition.load(partition_path)
    centres = np.stack([camera.center.double().numpy() for camera in scene.test])
    owners = partition.block_of(centres)
    coverage = view_coverage(scene.test, scene.points, partition.block_of(scene.points), partition.num_blocks)
    crossing = (coverage >= share).sum(axis=1) > 1
    groups = {str(b): owners == b for b in sorted(set(owners.tolist()))}
    return {"per_block": {name: _mean_scores(per_view, mask) for name, mask in groups.items()},
            "seams": {"crossing": _mean_scores(per_view, crossing), "inside": _mean_scores(per_view, ~crossing)}}


def _mean_scores(per_view: list[dict], mask: np.ndarray) -> dict:
    """Mean PSNR/SSIM of the views where ``mask`` is True (None when there are none)."""
    views = [v for v, keep in zip(per_view, mask) if keep]
    if not views:
        return {"psnr": None, "ssim": None, "num_test_views": 0}
    return {"psnr": float(np.mean([v["psnr"] for v in views])), "ssim": float(np.mean([v["ssim"] for v in views])),
            "num_test_views": len(views)}


def _synchronized_time(device: torch.device) -> float:
    """Wall-clock time after all queued device work has finished."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def summary_lines(results: dict, run_dir: str | Path) -> list[str]:
    """What ``mgs eval`` and ``mgs demo`` print about an evaluated run: scores, the model, the files, and
    the next command."""
    run_dir = Path(run_dir)
    lpips = "LPIPS —" if results["lpips"] is None else f"LPIPS {results['lpips']:.4f}"
    lines = [f"held-out PSNR {results['psnr']:.2f} dB, SSIM {results['ssim']:.4f}, {lpips} over "
             f"{results['num_test_views']} views, {results['seconds_per_view'] * 1000:.0f} ms/view",
             f"{'merged model' if 'per_block' in results else 'model'}: {results['num_anchors']} anchors"
             f"{' (each block cropped to its cell)' if 'per_block' in results else ''}, {results['storage_mb']:.1f} MB"]
    if results.get("depth_abs_error") is not None:
        lines.append(f"depth against the ground truth: {results['depth_abs_error']:.4f} units mean absolute error, "
                     f"{results['depth_rel_error']:.1%} relative (where the render covers a pixel)"
                     + (f"; median depth {results['median_depth_abs_error']:.4f} units, "
                        f"{results['median_depth_rel_error']:.1%}" if results.get("median_depth_abs_error") else ""))
    if "psnr_cc" in results:
        lines.append(f"colour-corrected: PSNR {results['psnr_cc']:.2f} dB, SSIM {results['ssim_cc']:.4f}")
    if results.get("lpips_note_said_before"):  # the whole hint once per run: it does not change
        lines.append("LPIPS not computed: its weights are still missing (lpips_note in eval/results.json)")
    elif results.get("lpips_note"):
        lines.append(f"LPIPS not computed: {results['lpips_note']}")
    folder = RunFolder(run_dir)
    if folder.strip.is_file():
        lines.append(f"held-out renders over ground truth: {folder.strip}")
    lines.append(f"next: mgs export {run_dir}")
    lines.append(str(folder.results))  # last, for scripts
    return lines
