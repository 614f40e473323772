"""Helpers shared by the dataset converters: the split names, image suffixes, output checks, and the staging
folder that a new ``train/`` + ``val/`` is assembled in and moved into place from, so that a UserError leaves
no half-written dataset behind."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from momentum_gs.data.colmap.model import ColmapModel
from momentum_gs.errors import UserError, listing

SPLITS = ("train", "val")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG")


def _ensure_free(out_dir: Path) -> None:
    taken = [s for s in (*SPLITS, "test") if (out_dir / s).exists()]
    if taken:
        raise UserError(f"{out_dir} already has {'/, '.join(taken)}/; choose a new output folder (nothing was written)")


@contextmanager
def _staged(out_dir: Path) -> Iterator[Path]:
    """A staging folder inside ``out_dir`` whose ``train/`` and ``val/`` move into ``out_dir`` at the end; on an
    error it is removed (and ``out_dir`` too if this made it and it is empty)."""
    created = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".mgs-convert-", dir=out_dir))
    except OSError as exc:
        raise UserError(f"cannot write into {out_dir}: {exc.strerror or exc}")
    try:
        yield stage
        for split in SPLITS:
            os.replace(stage / split, out_dir / split)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        if created and not any(out_dir.iterdir()):
            out_dir.rmdir()
        raise
    shutil.rmtree(stage, ignore_errors=True)


def _place(pairs: Iterable[tuple[Path, str]], images_dir: Path, copy: bool) -> None:
    """Put each source image at ``images_dir/name``: an absolute symlink, or a copy (also where links fail)."""
    for src, name in pairs:
        dst = images_dir / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not copy:
            try:
                os.symlink(src.resolve(), dst)
                continue
            except OSError:
                pass  # no symlinks here (e.g. Windows without the privilege): copy instead
        try:
            shutil.copy2(src, dst)
        except OSError as exc:
            raise UserError(f"cannot copy {src} to {dst}: {exc.strerror or exc}")


def _check_model(model: ColmapModel, images_dir: Path, sparse_dir: Path, needs_points: bool = False) -> None:
    """UserError naming the images ``model`` lists that ``images_dir`` lacks (or when it has no images, or no
    points where ``needs_points``: the Gaussians start from the training model's points)."""
    missing = sorted(im.name for im in model.images.values() if not (images_dir / im.name).is_file())
    if missing:
        raise UserError(f"{len(missing)} of the {len(model.images)} images listed in the COLMAP model {sparse_dir} "
                        f"are missing from {images_dir}: {listing(missing)}")
    if not model.images:
        raise UserError(f"the COLMAP model in {sparse_dir} has no registered images")
    if needs_points and len(model.points) == 0:
        raise UserError(f"{sparse_dir} has no 3D points; the Gaussians start from the training model's points")
