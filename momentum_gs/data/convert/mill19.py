"""The Mill-19 layout (``train/`` and ``val/``, each with ``images/`` and ``sparse/0``): check it, assemble it from
separate COLMAP models, split one model by a list of held-out images, or build it from the Mill-19 and
UrbanScene3D releases (Mega-NeRF ``rgbs/`` + the CityGaussian COLMAP models)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path

from momentum_gs.data.colmap.folder import read_model, write_model
from momentum_gs.data.colmap.model import ColmapModel
from momentum_gs.data.convert.common import SPLITS, _check_model, _ensure_free, _place, _staged
from momentum_gs.data.scene import _sparse_dir
from momentum_gs.errors import UserError, listing


def _model_dir(folder: Path) -> Path:
    sparse = _sparse_dir(folder)
    if sparse is None:
        raise UserError(f"{folder} has no COLMAP model (expected sparse/0/ with cameras, images, points3D)")
    return sparse


def _split_dirs(root: Path) -> dict[str, Path] | None:
    """{"train": root/train, "val": root/val (or root/test)}, or None when ``root`` is not split."""
    test = next((root / name for name in ("val", "test") if (root / name).is_dir()), None)
    return {"train": root / "train", "val": test} if (root / "train").is_dir() and test is not None else None


def check_mill19(scene_dir: str | Path) -> dict[str, int]:
    """Check a Mill-19 layout: ``train/`` and ``val/`` (or ``test/``) with ``images/`` and ``sparse/0``, every
    listed image present, training points present. Returns the image count per split; else a UserError."""
    root = Path(scene_dir)
    dirs = _split_dirs(root)
    if dirs is None:
        raise UserError(f"{root} has no train/ and val/ (or test/) folders")
    counts = {}
    for split, folder in dirs.items():
        sparse = _model_dir(folder)
        model = read_model(sparse, keypoints=False)
        _check_model(model, folder / "images", sparse, needs_points=split == "train")
        counts[split] = len(model.images)
    return counts


def _copy_model(sparse_dir: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for stem in ("cameras", "images", "points3D"):
        for suffix in (".bin", ".txt"):
            if (sparse_dir / f"{stem}{suffix}").is_file():
                shutil.copy2(sparse_dir / f"{stem}{suffix}", dst / f"{stem}{suffix}")


def mill19_layout(out_dir: str | Path, sources: Mapping[str, tuple[str | Path, str | Path]], copy: bool = False
                  ) -> dict[str, int]:
    """Assemble ``out_dir/{train,val}`` from separate models: ``sources[split] = (images_dir, sparse_dir)``.

    Every listed image is checked before anything is written; models are copied, images linked (or copied).
    """
    out_dir = Path(out_dir)
    if set(sources) != set(SPLITS):
        raise UserError("the Mill-19 layout needs a train and a val model")
    _ensure_free(out_dir)
    models = {}
    for split, (images_dir, sparse_dir) in sources.items():
        models[split] = read_model(Path(sparse_dir), keypoints=False)
        _check_model(models[split], Path(images_dir), Path(sparse_dir), needs_points=split == "train")
    with _staged(out_dir) as stage:
        for split, (images_dir, sparse_dir) in sources.items():
            _copy_model(Path(sparse_dir), stage / split / "sparse" / "0")
            names = [im.name for im in models[split].images.values()]
            _place(((Path(images_dir) / n, n) for n in names), stage / split / "images", copy)
    return check_mill19(out_dir)


def split_model(images_dir: str | Path, sparse_dir: str | Path, val_names: Iterable[str], out_dir: str | Path,
                copy: bool = False) -> dict[str, int]:
    """Split one model into ``out_dir/{train,val}``: the images named in ``val_names`` are held out.

    The training model keeps the points and tracks; the validation model keeps poses only.
    """
    images_dir, sparse_dir, out_dir = Path(images_dir), Path(sparse_dir), Path(out_dir)
    model = read_model(sparse_dir)
    _check_model(model, images_dir, sparse_dir, needs_points=True)
    val_names = set(val_names)
    unknown = sorted(val_names - {im.name for im in model.images.values()})
    if unknown:
        raise UserError(f"{len(unknown)} held-out image(s) are not in the model {sparse_dir}: {listing(unknown)}")
    val = {i: replace(im, xys=None, point3d_ids=None) for i, im in model.images.items() if im.name in val_names}
    train = {i: im for i, im in model.images.items() if im.name not in val_names}
    if not val or not train:
        raise UserError(f"the held-out list leaves {len(train)} training and {len(val)} validation images")
    _ensure_free(out_dir)
    parts = {"train": replace(model, images=train), "val": ColmapModel(model.cameras, val)}
    with _staged(out_dir) as stage:
        for split, part in parts.items():
            write_model(part, stage / split / "sparse" / "0")
            _place(((images_dir / im.name, im.name) for im in part.images.values()), stage / split / "images", copy)
    return check_mill19(out_dir)


def _read_names(val_list: str | Path) -> list[str]:
    try:
        lines = Path(val_list).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UserError(f"cannot read the held-out image list {val_list}: {exc.strerror or exc}")
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _images_dir(folder: Path) -> Path:
    """``folder/images``, else Mega-NeRF's ``folder/rgbs``."""
    found = next((folder / name for name in ("images", "rgbs") if (folder / name).is_dir()), None)
    if found is None:
        raise UserError(f"{folder} has no images/ (or Mega-NeRF's rgbs/) folder")
    return found


def _fix_in_place(dirs: dict[str, Path], sparse: dict[str, Path]) -> None:
    """Make each split folder usable where it is: ``images`` → ``rgbs`` link, model copied in; checked first."""
    for split, folder in dirs.items():
        own = _sparse_dir(folder)
        if own is not None and own != sparse[split]:
            raise UserError(f"{folder} already has a COLMAP model in {own}; remove it to use --colmap")
        model = read_model(sparse[split], keypoints=False)
        _check_model(model, _images_dir(folder), sparse[split], needs_points=split == "train")
    for split, folder in dirs.items():
        try:
            if not (folder / "images").is_dir():
                os.symlink("rgbs", folder / "images")
            if _sparse_dir(folder) is None:
                _copy_model(sparse[split], folder / "sparse" / "0")
        except OSError as exc:
            raise UserError(f"cannot fix {folder} in place ({exc.strerror or exc}); write a new layout with --out")


def prepare_mill19(src: str | Path, out: str | Path | None = None, colmap: str | Path | None = None,
                   val_list: str | Path | None = None, copy: bool = False) -> dict[str, int]:
    """Check or build the Mill-19 layout from a public release; returns the image count per split.

    - ``src`` with ``train/`` and ``val/`` (Mega-NeRF's ``*-pixsfm`` folders, images in ``images/`` or
      ``rgbs/``), models in each or in ``colmap/{train,val}/sparse`` (CityGaussian's released COLMAP results):
      fixed in place when ``out`` is None or ``src``, else assembled into ``out``.
    - ``src`` with ``images/`` + ``sparse/0`` and ``val_list`` (a file, one held-out image name per line):
      split into ``out``.
    """
    src = Path(src)
    dirs = _split_dirs(src)
    if dirs is None:
        if val_list is None or not (src / "images").is_dir():
            raise UserError(f"{src}: expected train/ + val/ folders (Mill-19, UrbanScene3D), or images/ + sparse/0 "
                            "with a list of held-out images (--val-list)")
        if out is None:
            raise UserError("splitting a single model needs an output folder (--out)")
        return split_model(src / "images", _model_dir(src), _read_names(val_list), out, copy)
    if val_list is not None:
        raise UserError(f"{src} is already split into train/ and val/; --val-list splits a single images/ + sparse/0")
    model_dirs = _split_dirs(Path(colmap)) if colmap is not None else dirs
    if model_dirs is None:
        raise UserError(f"{colmap} has no train/ and val/ (or test/) folders with COLMAP models")
    sparse = {split: _model_dir(folder) for split, folder in model_dirs.items()}
    if out is None or Path(out).resolve() == src.resolve():
        _fix_in_place(dirs, sparse)
        return check_mill19(src)
    return mill19_layout(Path(out), {s: (_images_dir(dirs[s]), sparse[s]) for s in SPLITS}, copy)
