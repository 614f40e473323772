"""The options of `mgs sfm` and their defaults: the one place the command line and the run read them from.

Kept free of heavy imports (no numpy, OpenCV or torch), since the command line builds its parser from it at
start-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

Matcher = Literal["auto", "exhaustive", "sequential", "spatial", "vocab"]
CameraMode = Literal["auto", "single", "per-image"]
AltitudeMode = Literal["auto", "use", "ignore"]
MATCHERS, ALTITUDE_MODES = get_args(Matcher), get_args(AltitudeMode)
# Exhaustive matching costs a pair per two photos. With GPS, spatial matching (30 neighbours a photo) matched
# far fewer pairs of a 100-photo survey in far less time, for the same registration and GPS residual
# (measured in docs/benchmarks/sfm.md, "Against photo count"), and makes fewer pairs than exhaustive from
# about 36 photos: exhaustive up to 60 photos, with a margin. Without GPS the alternative is sequential
# matching, which needs photos in capture order: exhaustive up to 100.
EXHAUSTIVE_MAX, EXHAUSTIVE_MAX_GPS = 100, 60


@dataclass
class SfmOptions:
    """How `mgs sfm` runs (the command line's options)."""

    matcher: Matcher = "auto"  # auto | exhaustive | sequential | spatial | vocab
    camera_model: str = "OPENCV"  # COLMAP camera model; a distorted one is undistorted by the image cache
    camera_mode: CameraMode = "auto"  # auto: one camera per EXIF camera and image size; single; per-image
    max_size: int = 1600  # longest image side for feature extraction, px: the largest size measured whose peak
    # memory on 12 MP photos stays within the 2 GB goal (docs/benchmarks/sfm.md, "Cost against `--max-size`")
    vocab_tree: str | None = None  # COLMAP vocabulary tree file, for --matcher vocab
    threads: int = -1  # CPU threads for COLMAP (-1: all)
    seed: int = 0  # COLMAP's random seed (RANSAC, mapping)
    gps_altitude: AltitudeMode = "auto"  # auto: used where it agrees with the photos' level; use; ignore
    keep_largest: bool = False  # write the largest connected part of a capture that does not connect
    overwrite: bool = False  # replace the scene already in OUT (after this run succeeds)
    gcp: str | None = None  # ground control points (OpenDroneMap's gcp_list.txt): placed on, then adjusted with the GPS
    adjust_gps: bool = True  # without ground control: adjust the placed model on its photos and its GPS
    check: str | None = None  # check points, in the same format: never used in a fit, measured against the result
