"""The pycolmap calls of `mgs sfm`: SIFT extraction, matching, incremental mapping, alignment to GPS.

Only glue lives here; COLMAP does the work (matching and mapping in a thread, so that their bars keep their
clocks). pycolmap is an optional dependency (``momentum_gs[sfm]``), imported when `mgs sfm` runs. Features and
matches stay in ``DATA/sfm/database.db``: COLMAP skips images whose features and pairs whose matches are
already there, so a rerun with other mapping options redoes neither (``features.json`` beside it records what
the features were extracted with; a change starts over).
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from momentum_gs.data.sfm.colmap_log import blocks_done, follow
from momentum_gs.data.sfm.options import EXHAUSTIVE_MAX, EXHAUSTIVE_MAX_GPS
from momentum_gs.errors import UserError

SPATIAL_NEIGHBOURS = 30  # pairs per photo for spatial matching: its nearest GPS neighbours
EXTRACT_CHUNK = 4  # photos per extraction call, so the progress bar moves
GPS_STD = 5.0  # metres, a consumer GPS's horizontal standard deviation (prior in bundle adjustment)
MATCH_UPDATES, MATCH_BLOCK_MIN = 40, 8  # matching's blocks: about this many, of at least this many pairs
FREE_VERTICAL_STD = 1000.0  # metres: an altitude prior this loose does not pull the model


def import_pycolmap():
    """The pycolmap module, or a UserError saying how to install it."""
    try:
        module = importlib.import_module("pycolmap")
    except ImportError:
        raise UserError("mgs sfm needs pycolmap (COLMAP's Python bindings): pip install 'momentum_gs[sfm]' "
                        "(or pip install pycolmap)") from None
    module.logging.minloglevel = 3  # COLMAP's log: fatal only; our bars, checks and summary say the rest
    return module


def choose_matcher(requested: str, n_images: int, has_gps: bool) -> str:
    """The matcher ``auto`` stands for: with GPS, exhaustive up to ``EXHAUSTIVE_MAX_GPS`` photos, then
    spatial; without, exhaustive up to ``EXHAUSTIVE_MAX``, then sequential (photos named in capture order, as
    drones and video frames are)."""
    if requested != "auto":
        return requested
    if n_images <= (EXHAUSTIVE_MAX_GPS if has_gps else EXHAUSTIVE_MAX):
        return "exhaustive"
    return "spatial" if has_gps else "sequential"


def extract(pycolmap, database: Path, images_dir: Path, groups: list[list[str]], camera_model: str,
            camera_mode: str, max_size: int, threads: int) -> None:
    """SIFT features of the photos (those not in the database yet) into ``database``, with a progress bar.

    ``groups``: photo names by camera (``auto``: one camera per group; ``single``: one for all; ``per-image``).
    """
    names = sorted(n for g in groups for n in g)
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = camera_model
    options = pycolmap.FeatureExtractionOptions()
    options.num_threads, options.max_image_size = threads, max_size
    # The photos of one camera are imported in one call, so that they share it (COLMAP's own AUTO mode gives
    # each photo without EXIF a camera of its own); extraction then goes in chunks, for the progress bar,
    # and finds each photo's camera in the database.
    pycolmap.Database.open(database).close()  # created when missing
    if camera_mode == "per-image":
        imports = [(names, pycolmap.CameraMode.PER_IMAGE)]
    else:
        imports = [(g, pycolmap.CameraMode.SINGLE) for g in (groups if camera_mode == "auto" else [names])]
    for group, mode in imports:
        pycolmap.import_images(database, images_dir, camera_mode=mode, image_names=group, options=reader)
    with tqdm(total=len(names), desc="features", unit="photo", dynamic_ncols=True) as bar:
        for start in range(0, len(names), EXTRACT_CHUNK):
            chunk = names[start:start + EXTRACT_CHUNK]
            pycolmap.extract_features(database, images_dir, image_names=chunk, reader_options=reader,
                                      extraction_options=options, device=pycolmap.Device.cpu)
            bar.update(len(chunk))


def image_pairs(pycolmap, database: Path, matcher: str, n_images: int, vocab_tree: Path | None) -> list[tuple[str, str]]:
    """The photo pairs ``matcher`` chooses (COLMAP's own pair generators), as name pairs."""
    db = pycolmap.Database.open(database)
    try:
        names = {im.image_id: im.name for im in db.read_all_images()}
        if matcher == "exhaustive":
            generator = pycolmap.ExhaustivePairGenerator(pycolmap.ExhaustivePairingOptions(), db)
        elif matcher == "spatial":
            pairing = pycolmap.SpatialPairingOptions()
            pairing.max_num_neighbors = min(SPATIAL_NEIGHBOURS, n_images - 1)
            pairing.max_distance = 1e9  # metres: the neighbour count limits the pairs, not a radius
            pairing.ignore_z = True  # the altitude may drift; neighbours on the ground are what overlap
            generator = pycolmap.SpatialPairGenerator(pairing, db)
        elif matcher == "sequential":
            generator = pycolmap.SequentialPairGenerator(pycolmap.SequentialPairingOptions(), db)
        else:
            pairing = pycolmap.VocabTreePairingOptions()
            pairing.vocab_tree_path = str(vocab_tree)  # checked with the options, before any work
            generator = pycolmap.VocabTreePairGenerator(pairing, db)
        pairs = generator.all_pairs()
    finally:
        db.close()
    # a pair generator lists a pair once from each side (spatial: each photo's neighbours): once is enough
    unique = dict.fromkeys((a, b) if a < b else (b, a) for a, b in pairs)
    return [(names[a], names[b]) for a, b in unique]


def check_vocab_tree(path: Path | None) -> Path:
    """``path`` if pycolmap reads it as a vocabulary tree; a UserError otherwise. The file is read in a child
    process first: COLMAP aborts the whole process (SIGABRT) on a file it cannot parse."""
    if path is None or not Path(path).is_file():
        raise UserError("--matcher vocab needs a vocabulary tree file: --vocab-tree FILE (COLMAP's "
                        "vocab_tree_*.bin from colmap.github.io/install.html), or use --matcher sequential")
    probe = "import sys, pycolmap; pycolmap.VisualIndex.read(sys.argv[1])"
    try:
        done = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, timeout=600)
    except subprocess.TimeoutExpired:
        raise UserError(f"--vocab-tree {path}: reading it took more than 10 minutes; give COLMAP's vocab_tree_*.bin")
    if done.returncode != 0:
        raise UserError(f"--vocab-tree {path} is not a vocabulary tree pycolmap {pycolmap_version()} can read; "
                        "download the one for this COLMAP version (colmap.github.io/install.html), or use "
                        "--matcher sequential")
    return Path(path)


def pycolmap_version() -> str:
    return getattr(sys.modules.get("pycolmap"), "__version__", "?")


def match_block_size(n_pairs: int) -> int:
    """Pairs per block of COLMAP's matching: about ``MATCH_UPDATES`` blocks, so that the bar moves, but at
    least ``MATCH_BLOCK_MIN`` pairs (each block is matched on every thread) and at most COLMAP's default."""
    return int(min(max(np.ceil(n_pairs / MATCH_UPDATES), MATCH_BLOCK_MIN), 1225))


def match(pycolmap, database: Path, pairs: list[tuple[str, str]], work_dir: Path, threads: int,
          matcher: str) -> None:
    """Match the features of ``pairs`` and verify them geometrically, in one call (pairs already matched are
    skipped by COLMAP), its progress read from COLMAP's log (``work_dir/colmap.log``) block by block.
    Separate calls for a moving bar split the synthetic city's 16 photos into 3 disconnected models (not
    understood) and were slower: the blocks of one call are not separate calls."""
    if not pairs:
        return
    options = pycolmap.FeatureMatchingOptions()
    options.num_threads = threads
    listing_path = work_dir / "pairs.txt"
    listing_path.write_text("".join(f"{a} {b}\n" for a, b in pairs))
    pairing = pycolmap.ImportedPairingOptions()
    pairing.match_list_path = str(listing_path)
    pairing.block_size = match_block_size(len(pairs))
    done = [0]

    def on_line(line: str) -> None:
        blocks = blocks_done(line)
        if blocks is not None:
            done[0] = round(len(pairs) * blocks[0] / max(blocks[1], 1))

    with follow(pycolmap, on_line, work_dir / "colmap.log") as stderr, \
            tqdm(total=len(pairs), desc=f"matching ({matcher})", unit="pair", dynamic_ncols=True, file=stderr) as bar:
        def poll() -> None:
            bar.update(done[0] - bar.n)

        in_thread(lambda: pycolmap.match_image_pairs(database, matching_options=options, pairing_options=pairing,
                                                     device=pycolmap.Device.cpu), poll, "colmap-matching")
        bar.update(bar.total - bar.n)
    listing_path.unlink(missing_ok=True)


def in_thread(work: Callable, poll: Callable[[], None], name: str):
    """``work()`` in a thread while ``poll()`` runs every half second in this one (COLMAP's calls hold no
    Python lock, so the bars keep their clocks going); its result, or its exception raised here."""
    result: dict = {}

    def run() -> None:
        try:
            result["value"] = work()
        except BaseException as exc:  # re-raised in the caller's thread
            result["error"] = exc

    worker = threading.Thread(target=run, name=name, daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.5)
        poll()
    if "error" in result:
        raise result["error"]
    return result["value"]


def map_images(pycolmap, database: Path, images_dir: Path, work_dir: Path, n_images: int, threads: int,
               seed: int, gps_priors: bool) -> list:
    """Incremental mapping (with the GPS positions as pose priors in bundle adjustment when ``gps_priors``, the
    focal lengths held when the EXIF gives them, then refined once); the reconstructions it made, largest first.
    COLMAP runs in a thread so that the bar keeps its clock going through the final adjustments after the last
    photo is registered."""
    options = pycolmap.IncrementalPipelineOptions()
    options.num_threads, options.random_seed = threads, seed
    # GPS priors keep a weakly textured or nearly planar capture from bending (focal length and shape trade
    # off against each other without them); COLMAP's robust loss on them absorbs a few wrong positions. The
    # horizontal priors cannot hold the height, so a focal known from EXIF is held while mapping and refined once
    # at the end (refine_intrinsics): refined from the first pairs, it drifted by a third on a nadir survey.
    options.use_prior_position = options.use_robust_loss_on_prior_position = gps_priors
    options.min_model_size = 3  # a small set's second model must show up, to be reported as disconnected
    held = focal_known(pycolmap, database)
    options.ba_refine_focal_length = not held  # refined from the first pairs, a focal drifts with the height
    with tqdm(total=n_images, desc="mapping", unit="photo", dynamic_ncols=True) as bar:
        def step(count: int) -> None:  # a second model registers photos again: the bar stops at the total
            bar.update(min(count, bar.total - bar.n))

        def poll() -> None:
            if bar.n >= bar.total and not bar.desc.endswith("adjustment)"):
                bar.set_description("mapping (final bundle adjustment)")
            bar.refresh()

        models = in_thread(lambda: pycolmap.incremental_mapping(database, images_dir, work_dir, options,
                                                                initial_image_pair_callback=lambda: step(2),
                                                                next_image_callback=lambda: step(1)),
                           poll, "colmap-mapping")
    models = sorted(models.values(), key=lambda r: -r.num_reg_images())
    if held:
        for model in models:
            refine_intrinsics(pycolmap, model)
    return models


def focal_known(pycolmap, database: Path) -> bool:
    """Whether every camera of ``database`` has its focal length from the photos' EXIF."""
    db = pycolmap.Database.open(database)
    try:
        cameras = db.read_all_cameras()
    finally:
        db.close()
    return bool(cameras) and all(c.has_prior_focal_length for c in cameras)


def refine_intrinsics(pycolmap, model) -> None:
    """One bundle adjustment of the whole ``model`` refining the focal lengths and distortion too, once every
    photo is in: a focal held at the EXIF's through mapping is corrected from all the views together."""
    options = pycolmap.BundleAdjustmentOptions(refine_focal_length=True, refine_principal_point=False,
                                               refine_extra_params=True)
    options.print_summary = False
    pycolmap.bundle_adjustment(model, options)


def prior_positions(enu: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The positions written as COLMAP's pose priors: ``enu`` with a missing altitude (NaN) at the others' median
    (0 when none has one).

    The altitudes are kept, not flattened to 0, even when they are given no weight: before each bundle adjustment
    with priors, COLMAP aligns the model to them by a robust similarity in 3D, and a target lying exactly in one
    plane fails that alignment, after which COLMAP leaves every prior out of the adjustment ("Alignment w.r.t. prior
    positions failed"). Without altitudes (:func:`priors_usable`) the priors are not used in mapping."""
    names = sorted(enu)
    positions = np.stack([np.asarray(enu[n], np.float64) for n in names]) if names else np.zeros((0, 3))
    known = np.isfinite(positions[:, 2])
    positions[~known, 2] = np.median(positions[known, 2]) if known.any() else 0.0
    return dict(zip(names, positions))


def priors_usable(enu: dict[str, np.ndarray]) -> bool:
    """Whether COLMAP's mapping can keep ``enu`` as pose priors: 3 photos or more with an altitude, so that the
    priors do not all lie in one plane (:func:`prior_positions`)."""
    return sum(bool(np.isfinite(p[2])) for p in enu.values()) >= 3


def write_priors(pycolmap, database: Path, enu: dict[str, np.ndarray], horizontal_only: bool) -> None:
    """Replace the database's pose priors (COLMAP's own reading of the EXIF) with ``enu``: photo name → [3]
    east, north, up metres, as Cartesian priors (:func:`prior_positions`). ``horizontal_only``: the altitude is given
    a standard deviation of ``FREE_VERTICAL_STD`` m, so that a drifting altitude cannot bend the model; the
    horizontal one is ``GPS_STD`` m. Otherwise COLMAP's default (1 m in every direction)."""
    positions = prior_positions(enu)
    db = pycolmap.Database.open(database)
    try:
        db.clear_pose_priors()
        for image in db.read_all_images():
            if image.name not in positions:
                continue
            prior = dict(coordinate_system=pycolmap.PosePriorCoordinateSystem.CARTESIAN,
                         corr_data_id=pycolmap.data_t(sensor_id=pycolmap.sensor_t(type=pycolmap.SensorType.CAMERA,
                                                                                  id=image.camera_id),
                                                      id=image.image_id))
            if horizontal_only:
                prior["position_covariance"] = np.diag([GPS_STD ** 2, GPS_STD ** 2, FREE_VERTICAL_STD ** 2])
            db.write_pose_prior(pycolmap.PosePrior(position=positions[image.name], **prior))
    finally:
        db.close()


def transform(pycolmap, reconstruction, matrix: np.ndarray) -> None:
    """Apply the similarity ``[s R | t]`` ([3, 4]) to the cameras and points of ``reconstruction``."""
    reconstruction.transform(pycolmap.Sim3d(np.asarray(matrix, np.float64)))
