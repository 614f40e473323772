"""The pycolmap calls of `mgs sfm`: SIFT extraction, matching, incremental mapping, alignment to GPS.

Only glue lives here; COLMAP does the work. pycolmap is an optional dependency (``momentum_gs[sfm]``),
imported when `mgs sfm` runs. Features and matches stay in ``DATA/sfm/database.db``: COLMAP skips images
whose features and pairs whose matches are already there, so a rerun with other mapping options redoes
neither (``features.json`` beside it records what the features were extracted with; a change starts over).
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path

import numpy as np
from tqdm import tqdm

from momentum_gs.errors import UserError

MATCHERS = ("auto", "exhaustive", "sequential", "spatial", "vocab")
CAMERA_MODES = ("auto", "single", "per-image")
# Exhaustive matching costs a pair per two photos: 153 pairs took 13 s on 2 cores (brighton_beach, 2000 px,
# up to 8192 features), so 100 photos (4950 pairs) take about 7 minutes; beyond that, neighbours only.
EXHAUSTIVE_MAX = 100
SPATIAL_NEIGHBOURS = 30  # pairs per photo for spatial matching: its nearest GPS neighbours
EXTRACT_CHUNK = 4  # photos per extraction call, so the progress bar moves


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
    """The matcher ``auto`` stands for: exhaustive up to ``EXHAUSTIVE_MAX`` photos, then spatial when the
    photos carry GPS, else sequential (photos named in capture order, as drones and video frames are)."""
    if requested != "auto":
        return requested
    if n_images <= EXHAUSTIVE_MAX:
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


def match(pycolmap, database: Path, matcher: str, n_images: int, threads: int, vocab_tree: Path | None) -> None:
    """Match feature pairs chosen by ``matcher`` and verify them geometrically (pairs already matched are kept)."""
    options = pycolmap.FeatureMatchingOptions()
    options.num_threads = threads
    kwargs = dict(matching_options=options, device=pycolmap.Device.cpu)
    with tqdm(total=1, desc=f"matching ({matcher})", unit="step", dynamic_ncols=True) as bar:
        if matcher == "exhaustive":
            pycolmap.match_exhaustive(database, **kwargs)
        elif matcher == "spatial":
            pairing = pycolmap.SpatialPairingOptions()
            pairing.max_num_neighbors = min(SPATIAL_NEIGHBOURS, n_images - 1)
            pairing.max_distance = 1e9  # metres: the neighbour count limits the pairs, not a radius
            pycolmap.match_spatial(database, pairing_options=pairing, **kwargs)
        elif matcher == "sequential":
            pycolmap.match_sequential(database, **kwargs)
        else:
            if vocab_tree is None or not Path(vocab_tree).is_file():
                raise UserError("--matcher vocab needs a vocabulary tree file: --vocab-tree FILE (COLMAP's "
                                "vocab_tree_*.bin from colmap.github.io/install.html), or use --matcher sequential")
            pairing = pycolmap.VocabTreePairingOptions()
            pairing.vocab_tree_path = str(vocab_tree)
            pycolmap.match_vocabtree(database, pairing_options=pairing, **kwargs)
        bar.update(1)


def map_images(pycolmap, database: Path, images_dir: Path, work_dir: Path, n_images: int, threads: int,
               seed: int, gps_priors: bool) -> list:
    """Incremental mapping (with the GPS positions as pose priors in bundle adjustment when ``gps_priors``);
    the reconstructions it made, largest first."""
    options = pycolmap.IncrementalPipelineOptions()
    options.num_threads, options.random_seed = threads, seed
    # GPS priors keep a weakly textured or nearly planar capture from bending (focal length and shape trade
    # off against each other without them); COLMAP's robust loss on them absorbs a few wrong positions.
    options.use_prior_position = options.use_robust_loss_on_prior_position = gps_priors
    options.min_model_size = 3  # a small set's second model must show up, to be reported as disconnected
    bar = tqdm(total=n_images, desc="mapping", unit="photo", dynamic_ncols=True)

    def step(count: int) -> None:  # a second model registers photos again: the bar stops at the total
        bar.update(min(count, bar.total - bar.n))

    try:
        found = pycolmap.incremental_mapping(database, images_dir, work_dir, options,
                                             initial_image_pair_callback=lambda: step(2),
                                             next_image_callback=lambda: step(1))
    finally:
        bar.close()
    return sorted(found.values(), key=lambda r: -r.num_reg_images())


def read_gps(pycolmap, database: Path) -> dict[str, np.ndarray]:
    """Photo name → [3] (lat°, lon°, alt m) from the EXIF GPS that COLMAP's image reader stored as pose priors."""
    db = pycolmap.Database.open(database)
    try:
        names = {im.image_id: im.name for im in db.read_all_images()}
        gps = {}
        for prior in db.read_all_pose_priors():
            if prior.coordinate_system == pycolmap.PosePriorCoordinateSystem.WGS84 and prior.has_position():
                gps[names[prior.corr_data_id.id]] = np.asarray(prior.position, np.float64)
    finally:
        db.close()
    return gps


def drop_gps(pycolmap, database: Path, names: list[str]) -> None:
    """Remove the GPS priors of the photos ``names`` from the database (positions without a fix), so that
    neither spatial matching nor mapping uses them."""
    if not names:
        return
    db = pycolmap.Database.open(database)
    try:
        ids = {im.image_id for im in db.read_all_images() if im.name in set(names)}
        keep = [p for p in db.read_all_pose_priors() if p.corr_data_id.id not in ids]
        db.clear_pose_priors()
        for prior in keep:
            db.write_pose_prior(prior)
    finally:
        db.close()


def align_to_enu(pycolmap, reconstruction, enu: dict[str, np.ndarray], extent: float):
    """Fit ``reconstruction`` to the ENU positions by a similarity (RANSAC, pycolmap) and apply it.

    Returns the ``pycolmap.Sim3d`` (new-from-old world), or None when no fit was found.
    """
    names = sorted(enu)
    ransac = pycolmap.RANSACOptions()
    ransac.max_error = max(5.0, 0.05 * extent)  # metres: consumer GPS is good to a few metres
    ransac.random_seed = 0
    sim = pycolmap.align_reconstruction_to_locations(reconstruction, names, np.stack([enu[n] for n in names]),
                                                     3, ransac)
    if sim is None or not math.isfinite(float(np.asarray(sim.scale))) or float(np.asarray(sim.scale)) <= 0:
        return None
    reconstruction.transform(sim)
    return sim
