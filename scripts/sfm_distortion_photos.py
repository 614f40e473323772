"""What the photos and the GPS say of the flight matrix's distorted reconstructions.

    python scripts/sfm_distortion_photos.py [--seeds 0 1 2]

1. The photos: each distortion (``survey.distort``) against the flight as flown, as a reprojection error: every
   sparse point a camera sees, projected by the true camera and by the distorted one (a 4000-pixel-wide photo, the
   width of 12 MP at 4:3), pixels, median / 99th percentile (seed 0, 60 photos a flight). A bundle adjustment
   leaves about a pixel.
2. The GPS: for the corridors and orbits of each distortion with 5 m and 1 m of GPS noise, the outcome of the
   flight matrix and the parts of the GPS residuals of the fit that placed them (:mod:`momentum_gs.data.sfm.field`):
   noise from photo to photo, slow, depending on place and its F statistic.
3. The same parts for the consumer matrix's corridors and orbits placed right (5 m of noise and 15 m of slow
   wander): what a GPS alone makes of a flight that is not out of shape.
"""

from __future__ import annotations

import argparse

import numpy as np

from momentum_gs.data.sfm import field as F
from momentum_gs.data.sfm.flight_matrix import Case, build, consumer_gps, run_case
from momentum_gs.data.sfm.placement import inlier_floor, place_on_gps
from momentum_gs.data.sfm.up import Views
from momentum_gs.data.synthetic.survey import DISTORTIONS, HFOV_DEG, PATTERNS, distort, in_frame, make_flight

WIDTH_PX = 4000


def reprojection(flight, model) -> np.ndarray:
    """Pixels between each point's projection by the true and by the distorted camera, over every camera and the
    points inside its frame."""
    focal = WIDTH_PX / 2 / np.tan(np.radians(HFOV_DEG) / 2)
    errors = []
    for R, c, R2, c2 in zip(flight.rotations, flight.centres, model.rotations, model.centres):
        cam, inside = in_frame(R, c, flight.points)
        moved = (model.points[inside] - c2) @ R2.T
        errors.append(np.linalg.norm(cam[inside, :2] / cam[inside, 2:] - moved[:, :2] / moved[:, 2:], axis=1) * focal)
    return np.concatenate(errors)


def parts(case: Case) -> F.Field | None:
    """The field of the GPS residuals of the fit that places ``case`` (None when it is refused before a fit)."""
    flight, model, _, _ = build(case)
    threshold, _ = inlier_floor(flight.gps)
    views = Views(model.rotations, model.centres, model.seen, model.points)
    fit = place_on_gps(views, model.centres, flight.gps, "auto", threshold, case.seed).fit
    if fit is None:
        return None
    keep = fit.inliers & np.isfinite(flight.gps[:, :2]).all(1)
    return F.measure(fit.apply(model.centres[keep])[:, :2], fit.residuals[keep])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    print(f"| form | {' | '.join(PATTERNS)} |\n|---|{'---|' * len(PATTERNS)}")
    flights = {p: make_flight(p, gps_noise_m=5.0, seed=0) for p in PATTERNS}
    for kind in DISTORTIONS:
        cells = [reprojection(flights[p], distort(flights[p], kind)) for p in PATTERNS]
        print(f"| {kind} | " + " | ".join(f"{np.median(e):.0f} / {np.percentile(e, 99):.0f} px" for e in cells) + " |")
    print("\n| distortion | pattern | noise | seed | outcome | noise (m) | slow (m) | place (m) | place F |\n"
          "|---|---|---|---|---|---|---|---|---|")
    for kind in ("stretch", "scale_drift"):
        for pattern in ("corridor", "orbit"):
            for noise in (1.0, 5.0):
                for seed in args.seeds:
                    case = Case(pattern, 0, 0, 0.0, noise, True, True, seed=seed, distortion=kind)
                    row, found = run_case(case), parts(case)
                    numbers = "- | - | - | -" if found is None else \
                        f"{found.noise:.2f} | {found.slow:.2f} | {found.place:.2f} | {found.place_f:.2f}"
                    print(f"| {kind} | {pattern} | {noise:g} m | {seed} | {row['outcome']} | {numbers} |")
    print("\n| consumer GPS, placed right | seed | flights | place F: median | 90th percentile | highest | slow (m): "
          "highest |\n|---|---|---|---|---|---|---|")
    for pattern in ("corridor", "orbit"):
        for seed in args.seeds:
            cases = [c for c in consumer_gps(seed) if c.pattern == pattern and c.roll == 0]
            found = [parts(c) for c in cases if run_case(c)["outcome"] == "right"]
            f = np.array([x.place_f for x in found if x is not None])
            slow = max(x.slow for x in found if x is not None)
            print(f"| {pattern} | {seed} | {len(f)} | {np.median(f):.2f} | {np.percentile(f, 90):.2f} | "
                  f"{f.max():.2f} | {slow:.1f} |")


if __name__ == "__main__":
    main()
