#!/usr/bin/env python3
"""How big the momentum teacher's consistency term is over a run, and how hard it pulls the anchors.

For every checkpoint of a run trained with the teacher, on a few training views of a few blocks:
- the four terms of L_cons (opacity, colour, scale, rotation; their sum times λ_cons is what training adds);
- the teacher's lag: ‖θ_teacher − θ_student‖ / ‖θ_student‖ over the decoder's weights;
- the gradient of λ_cons·L_cons on the anchor features, as a fraction of the reconstruction loss's, in the
  paper's gradient form (``reference``) and with the teacher as a constant target (``student``);
- the median child scale in world units (the scale term is a squared length: it grows with the square of
  the scene's unit, while the other three terms do not depend on it).

    python scripts/consistency_terms.py RUN [--views 4] [--blocks 0 4] [--out RUN/consistency_terms.md]
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import torch

from momentum_gs.config import load_config
from momentum_gs.data.scene import load_scene
from momentum_gs.errors import UserError
from momentum_gs.losses import reconstruction_loss
from momentum_gs.model.gaussian_scene import render_view
from momentum_gs.train.trainer import Trainer

TERMS = ("opacity", "color", "scale", "rotation")


def checkpoints(run: Path) -> list[Path]:
    """The run's checkpoints in step order."""
    found = [(int(m.group(1)), p) for p in (run / "ckpt").glob("step_*.pt")
             if (m := re.fullmatch(r"step_(\d+)\.pt", p.name))]
    return [p for _, p in sorted(found)]


def measure(trainer: Trainer, blocks: list[int], views: int) -> dict:
    """Mean terms, teacher lag and gradient ratios over ``views`` training views of each of ``blocks``."""
    cfg, lam = trainer.cfg, trainer.cfg.teacher.lambda_cons
    student = torch.cat([p.detach().flatten() for p in trainer.decoder.parameters()])
    teacher = torch.cat([p.detach().flatten() for p in trainer.teacher.module.parameters()])
    out = {name: 0.0 for name in TERMS} | {"ratio_reference": 0.0, "ratio_student": 0.0, "child_scale": 0.0}
    count = 0
    for b in blocks:
        block = trainer.placement.activate([b])[0]
        for index in block.cameras[:: max(len(block.cameras) // views, 1)][:views]:
            camera, gt = trainer.cameras[index], trainer.loader[index]
            view = render_view([(block.anchors, trainer.decoder)], camera, cfg.render, trainer.appearance, camera.uid)
            recon, _ = reconstruction_loss(view.output.image, gt, view.gaussians.scales, cfg.optim)
            feats = block.anchors.features
            g_recon = torch.autograd.grad(recon, feats, retain_graph=True)[0].norm()
            for form in ("reference", "student"):
                cons, parts = trainer.teacher.consistency(view.gaussians, form)
                g_cons = torch.autograd.grad(lam * cons, feats, retain_graph=True, allow_unused=True)[0]
                ratio = 0.0 if g_cons is None else float(g_cons.norm() / g_recon.clamp_min(1e-30))
                out[f"ratio_{form}"] += ratio
            for name in TERMS:
                out[name] += float(parts[name])
            out["child_scale"] += float(view.gaussians.scales.detach().median())
            count += 1
    mean = {name: value / max(count, 1) for name, value in out.items()}
    mean["lag"] = float((teacher - student).norm() / student.norm())
    return mean


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--views", type=int, default=4, help="training views per block")
    parser.add_argument("--blocks", type=int, nargs="+", default=[0])
    parser.add_argument("--out", type=Path, default=None, help="markdown table (default RUN/consistency_terms.md)")
    args = parser.parse_args()
    if not (args.run / "config.yaml").is_file():
        raise SystemExit(f"consistency_terms.py: {args.run} is not a run folder (no config.yaml)")
    cfg = load_config(args.run / "config.yaml", ["device=cpu", "log.tensorboard=false"])
    if not cfg.teacher.enabled:
        raise SystemExit(f"consistency_terms.py: {args.run} was trained without the teacher (teacher.enabled=false)")
    paths = checkpoints(args.run)
    if not paths:
        raise SystemExit(f"consistency_terms.py: {args.run}/ckpt holds no checkpoint")
    torch.set_grad_enabled(True)
    trainer = Trainer(cfg, load_scene(cfg.data), args.run / "consistency_terms_tmp", torch.device("cpu"))
    lines = [f"λ_cons = {cfg.teacher.lambda_cons}, teacher.gradient = {cfg.teacher.gradient}, momentum "
             f"{cfg.teacher.momentum}; blocks {args.blocks}, {args.views} views each", "",
             "| global step | L_opacity | L_color | L_scale | L_rotation | λ·L_cons | teacher lag | "
             "∇feat cons/recon (reference) | (student) | median child scale |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for path in paths:
        try:
            trainer.load(path)
        except UserError as exc:
            raise SystemExit(f"consistency_terms.py: {exc}")
        m = measure(trainer, args.blocks, args.views)
        total = cfg.teacher.lambda_cons * sum(m[name] for name in TERMS)
        lines.append(f"| {trainer.step} | {m['opacity']:.2e} | {m['color']:.2e} | {m['scale']:.2e} | "
                     f"{m['rotation']:.2e} | {total:.2e} | {m['lag']:.2e} | {m['ratio_reference']:.3f} | "
                     f"{m['ratio_student']:.3f} | {m['child_scale']:.3f} |")
        print(lines[-1], flush=True)
    out = args.out or args.run / "consistency_terms.md"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
