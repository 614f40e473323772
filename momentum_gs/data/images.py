"""Images: decode, downsample and undistort once into an on-disk cache, then load lazily with prefetching.

Cache folders sit next to ``images/`` (or under a separate cache root for read-only datasets):
``images_4`` (factor 4), ``images_w1600`` (at most 1600 px wide), ``images_undistorted[_4|_w1600]``
(distorted cameras). Cached files are PNG named ``<stem>.png``, the name Momentum-GS's own ``images_4``
uses, so a folder it made is reused. Each folder keeps ``.mgs_cache.json`` with the source file's size and
time and the recipe of every file, so a changed source or camera rebuilds only what changed. Before building,
the files to write are checked: a cache folder that is a link leading out of the cache root, or a cached file
or manifest that is a link, is refused in one line (nothing is written through it).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from momentum_gs.config import environment
from momentum_gs.data.camera import Camera
from momentum_gs.errors import UserError, listing
from momentum_gs.io.atomic import atomic_write_text, new_temporary, temporary_path
from momentum_gs.io.safe_path import inside, not_a_link

MANIFEST = ".mgs_cache.json"
# An entry is about 60 bytes: 64 MiB describes a million images, more than a cache folder holds.
MAX_MANIFEST_BYTES = 1 << 26


def capped(width: int, downsample: int = 1, max_width: int = 0) -> bool:
    """True when ``max_width`` (> 0) makes an image of ``width`` pixels narrower than ``downsample`` alone does."""
    return max_width > 0 and width / max(int(downsample), 1) > max_width


def target_size(width: int, height: int, downsample: int = 1, max_width: int = 0) -> tuple[int, int]:
    """(width, height) in pixels after dividing by ``downsample``, then fitting ``max_width`` if > 0 and narrower."""
    scale = max_width / width if capped(width, downsample, max_width) else 1.0 / max(int(downsample), 1)
    return max(1, round(width * scale)), max(1, round(height * scale))


def cache_suffix(downsample: int = 1, max_width: int = 0, undistorted: bool = False, width: int | None = None
                 ) -> str:
    """The cache folder suffix: ``"4"``, ``"w1600"``, ``"undistorted_4"``, ... (``""``: no cache). With ``width``,
    ``max_width`` names the folder only where it shrinks an image of that width (``None``: wherever it is set)."""
    parts = ["undistorted"] if undistorted else []
    cap = max_width > 0 and (width is None or capped(width, downsample, max_width))
    if cap:
        parts.append(f"w{max_width}")
    elif downsample > 1:
        parts.append(str(downsample))
    return "_".join(parts)


def default_cache_root(images_dir: Path) -> Path:
    """Where ``images_dir``'s cache folders go: beside it, or in ``$MGS_CACHE`` (default
    ``~/.cache/momentum_gs``) under a per-dataset folder when the dataset is read-only."""
    parent = images_dir.resolve().parent
    # Mode bits too: root may write anywhere, but a folder without write bits is meant to stay untouched.
    if os.access(parent, os.W_OK) and parent.stat().st_mode & 0o222:
        return parent
    digest = hashlib.sha1(str(parent).encode()).hexdigest()[:10]
    return Path(environment.text("MGS_CACHE") or "~/.cache/momentum_gs").expanduser() / f"{parent.name}-{digest}"


def read_image(path: Path) -> np.ndarray:
    """[H, W, 3] uint8 RGB pixels of an image file, EXIF orientation ignored (as COLMAP reads them)."""
    try:
        data = np.fromfile(path, np.uint8)
    except OSError as exc:
        raise UserError(f"cannot read image {path}: {exc.strerror or exc}")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION) if data.size else None
    if image is None:
        raise UserError(f"cannot decode image {path} (empty, truncated or not an image)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def fit_size(image: np.ndarray, width: int, height: int, path: Path) -> np.ndarray:
    """``image`` at exactly ``width`` x ``height``: a 1-pixel rounding difference is resized away, any
    larger one is a UserError naming the file."""
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    if abs(w - width) > 1 or abs(h - height) > 1:
        raise UserError(f"image {path} is {w}x{h} pixels but its camera expects {width}x{height}; "
                        "the images do not match the COLMAP model (or a cache folder is stale: delete it)")
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


@dataclass(frozen=True)
class ImageJob:
    """One image to bring to the size (and undistortion) its camera wants.

    Attributes:
        src: the original image file.
        dst: the cached file to write, or None to use ``src`` as it is.
        size: (width, height) in pixels of the image to load.
        src_size: (width, height) the COLMAP camera gives ``src``.
        undistort: resampling applied at full size before downsampling, or None.
        recipe: text naming ``undistort`` exactly, so that a cache made another way is rebuilt.
    """

    src: Path
    dst: Path | None
    size: tuple[int, int]
    src_size: tuple[int, int]
    undistort: Callable[[np.ndarray], np.ndarray] | None = None
    recipe: str = ""

    def signature(self) -> str:
        stat = self.src.stat()
        return f"{stat.st_size}:{stat.st_mtime_ns}:{self.size[0]}x{self.size[1]}:{self.recipe}"


def _build(job: ImageJob) -> None:
    """Decode, check, undistort, downsample and atomically write one cached image."""
    image = fit_size(read_image(job.src), *job.src_size, job.src)
    if job.undistort is not None:
        image = job.undistort(image)
    if (image.shape[1], image.shape[0]) != job.size:
        image = cv2.resize(image, job.size, interpolation=cv2.INTER_AREA)
    _, encoded = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    tmp = temporary_path(job.dst)  # unique per process: ranks may race
    try:
        job.dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = new_temporary(job.dst)  # made anew: never written through a link left there
        tmp.write_bytes(encoded.tobytes())
        os.replace(tmp, job.dst)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(f"cannot write the cached image {job.dst}: {exc.strerror or exc} (set MGS_CACHE or pass "
                        "a writable cache folder)")


def _reusable(job: ImageJob, manifest: dict) -> Path | None:
    """The cached file to use for ``job`` if one is present and up to date, else None."""
    candidates = [c for c in (job.dst, job.dst.with_name(job.src.name)) if c.is_file()]
    if not job.src.is_file():  # a dataset shipped only downsampled: nothing to compare against
        return candidates[0] if candidates else None
    if job.dst.name in manifest:
        return job.dst if job.dst in candidates and manifest[job.dst.name] == job.signature() else None
    if job.recipe:  # undistorted files are only trusted with their manifest entry
        return None
    # A folder another tool made (PNG named by stem, as Momentum-GS does, or the original name): use it if
    # it is newer than its source.
    return next((c for c in candidates if c.stat().st_mtime >= job.src.stat().st_mtime), None)


def read_manifest(folder: Path) -> dict[str, str]:
    """{cached file name: signature of what it was made from} of ``folder``'s manifest. A manifest that is
    missing, unreadable, larger than any cache needs, not JSON or not such a mapping is ignored ({}; entries that
    are not text are dropped): the images it would describe are rebuilt, never trusted."""
    path = folder / MANIFEST
    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            return {}
        entries = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):  # ValueError: not JSON, or not UTF-8 text
        return {}
    if not isinstance(entries, dict):
        return {}
    return {name: signature for name, signature in entries.items() if isinstance(signature, str)}


def _write_manifest(folder: Path, manifest: dict) -> None:
    atomic_write_text(folder / MANIFEST, json.dumps(manifest, indent=0, sort_keys=True))


def _check_writable(todo: list[ImageJob], root: Path | None) -> None:
    """Before anything is cached: no link between ``root`` (the cache root) and a file to write leads outside
    ``root``, and no file to replace (a cached image, a manifest) is a link (:mod:`momentum_gs.io.safe_path`)."""
    for path in {p for job in todo for p in (job.dst, job.dst.parent / MANIFEST)}:
        inside(path, root or path.parent)
        not_a_link(path)


def _build_all(todo: list[ImageJob], manifests: dict[Path, dict], workers: int) -> None:
    """Build the cached files of ``todo`` on ``workers`` threads and record them in their manifests."""
    todo = sorted(todo, key=lambda job: job.recipe)  # one camera at a time: its undistortion maps are reused
    pool = ThreadPoolExecutor(workers)
    try:
        results = pool.map(_build, todo)
        for job, _ in tqdm(zip(todo, results), total=len(todo), desc="caching images", disable=len(todo) < 16):
            manifests[job.dst.parent][job.dst.name] = job.signature()
    finally:
        pool.shutdown(cancel_futures=True)  # after a failure, do not build the thousands still queued
        for folder in {job.dst.parent for job in todo if job.dst.parent.is_dir()}:
            _write_manifest(folder, manifests[folder])  # keep what was built, even when one image failed


def prepare_images(jobs: Sequence[ImageJob], workers: int = 0, root: Path | None = None) -> list[Path]:
    """Build or reuse the cached images of ``jobs`` and return the file to load for each, in order.

    Raises a UserError naming the missing images, or the first image whose size disagrees with its camera.
    ``workers`` threads decode and encode in parallel (0: one per CPU core). ``root``: the folder the cache
    folders are in; nothing is written through a link below it that leads elsewhere (None: each cached file's
    folder).
    """
    manifests = {folder: read_manifest(folder) for folder in {job.dst.parent for job in jobs if job.dst}}
    paths, todo, missing = [], [], []
    for job in jobs:
        if job.dst is None:  # used as it is
            found = job.src if job.src.is_file() else None
        else:
            found = _reusable(job, manifests[job.dst.parent])
        if found is None:
            (todo if job.src.is_file() else missing).append(job)
        paths.append(found or job.dst)
    if missing:
        raise UserError(f"{len(missing)} image(s) listed in the COLMAP model are missing from "
                        f"{missing[0].src.parent}: {listing(job.src.name for job in missing)}")
    if todo:
        _check_writable(todo, root)
        _build_all(todo, manifests, workers or os.cpu_count() or 1)
    return paths


def default_cache_bytes(processes: int = 1) -> int:
    """A quarter of this machine's physical memory (1 GiB where it cannot be read), shared by the ``processes``
    training processes of this machine."""
    processes = max(1, processes)
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4 // processes
    except (ValueError, OSError, AttributeError):
        return (1 << 30) // processes


class ImageCache:
    """Decoded uint8 images in one preallocated buffer of equal slots, least recently used out first.

    One slot holds the largest image; there are as many slots as the byte budget allows, at most one per
    image. The buffer is reserved at the first store and its pages become resident only as slots fill, so
    memory grows with what is cached and never past the budget, with no per-image allocation to fragment
    the heap. Thread-safe: readers get a copy made under the lock (``take``).
    """

    def __init__(self, sizes: Sequence[tuple[int, int]], budget: int):
        self.shapes = [(h, w, 3) for w, h in sizes]
        self.slot_bytes = max((h * w * 3 for h, w, _ in self.shapes), default=0)
        self.num_slots = min(len(self.shapes), budget // self.slot_bytes) if self.slot_bytes else 0
        self._buffer: torch.Tensor | None = None
        self._slots: OrderedDict[int, int] = OrderedDict()  # image → slot, least recently used first
        self._lock = threading.Lock()

    @property
    def capacity_bytes(self) -> int:
        return self.num_slots * self.slot_bytes

    def __len__(self) -> int:
        return len(self._slots)

    def _view(self, i: int, slot: int) -> torch.Tensor:
        h, w, c = self.shapes[i]
        return self._buffer[slot * self.slot_bytes: slot * self.slot_bytes + h * w * c].view(h, w, c)

    def take(self, i: int, finish: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor | None:
        """``finish`` (which must copy) applied to the cached image ``i``, or None when it is not cached."""
        with self._lock:
            slot = self._slots.get(i)
            if slot is None:
                return None
            self._slots.move_to_end(i)
            return finish(self._view(i, slot))

    def put(self, i: int, pixels: torch.Tensor) -> None:
        """Copy ``pixels`` (uint8 [H, W, 3]) in, evicting the least recently used image when full."""
        if self.num_slots == 0 or tuple(pixels.shape) != self.shapes[i]:
            return
        with self._lock:
            if i in self._slots:
                return
            if self._buffer is None:
                self._buffer = torch.empty(self.capacity_bytes, dtype=torch.uint8)
            if len(self._slots) < self.num_slots:
                slot = len(self._slots)
            else:
                _, slot = self._slots.popitem(last=False)
            self._view(i, slot).copy_(pixels)
            self._slots[i] = slot


class ImageLoader:
    """Lazily decoded images of ``cameras``, as [H, W, 3] float32 RGB tensors in [0, 1].

    Nothing is read at construction. ``iterate`` decodes ``prefetch`` images ahead of use on background
    threads, in the order it is given (the scheduler's view order). With ``cache`` on, decoded images stay
    in memory as uint8 (a quarter of the float size) in an :class:`ImageCache` of at most ``cache_bytes``
    (0: a quarter of the machine's memory, shared by its ``processes`` training processes), least recently used out first.
    """

    _pool: ThreadPoolExecutor | None = None

    def __init__(self, cameras: list[Camera], cache: bool = True, prefetch: int = 4, cache_bytes: int = 0,
                 processes: int = 1):
        self.cameras, self.prefetch = list(cameras), max(0, int(prefetch))
        budget = (cache_bytes or default_cache_bytes(processes)) if cache else 0
        self.cache = ImageCache([(cam.width, cam.height) for cam in self.cameras], budget)

    def __len__(self) -> int:
        return len(self.cameras)

    def _load(self, i: int, finish: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``finish`` applied to the uint8 [H, W, 3] image of camera ``i`` (from the cache, or decoded and
        then cached); ``finish`` must return a new tensor, as a cached image is overwritten when evicted."""
        i = int(i)  # also a 0-d tensor from torch.randperm
        cached = self.cache.take(i, finish)
        if cached is not None:
            return cached
        cam = self.cameras[i]
        if cam.image_path is None:
            raise UserError(f"camera {cam.name} has no image file")
        pixels = torch.from_numpy(fit_size(read_image(cam.image_path), cam.width, cam.height, cam.image_path))
        self.cache.put(i, pixels)
        return finish(pixels)

    def _pixels(self, i: int, pin: bool = False) -> torch.Tensor:
        """[H, W, 3] uint8 image of camera ``i`` (a copy); in page-locked memory with ``pin``."""
        return self._load(i, torch.Tensor.pin_memory if pin else torch.clone)

    def _decode(self, i: int) -> torch.Tensor:
        return self._load(i, lambda pixels: pixels.float().div_(255.0))

    def __getitem__(self, i: int) -> torch.Tensor:
        """[H, W, 3] float32 image of camera ``i`` (H, W = the camera's height and width)."""
        return self._decode(i)

    def iterate(self, order: Sequence[int], device: torch.device | str | None = None
                ) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield ``(i, image)`` for every ``i`` in ``order``, in that order, decoding ahead in the background.

        Images are float32 on ``device`` (default: the CPU). For a CUDA device the background threads also
        copy each image into page-locked memory, and the image crosses to the GPU as uint8 (a quarter of
        the bytes), without waiting, before it is converted there.
        """
        device = torch.device(device or "cpu")
        pin = device.type == "cuda"
        load = self._decode if device.type == "cpu" else functools.partial(self._pixels, pin=pin)

        def finish(pixels: torch.Tensor) -> torch.Tensor:
            if device.type == "cpu":
                return pixels
            # by a device tensor: CUDA divides by a host scalar as a product with its reciprocal (1 ulp off
            # for half of the 256 levels), which would make the images differ from the CPU's
            return pixels.to(device, non_blocking=pin).float().div_(torch.full((), 255.0, device=device))

        if self.prefetch == 0:
            yield from ((i, finish(load(i))) for i in order)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(min(self.prefetch, os.cpu_count() or 1), thread_name_prefix="images")
        ahead: deque[tuple[int, Future]] = deque()
        indices = iter(order)
        try:
            while True:
                while len(ahead) < self.prefetch and (i := next(indices, None)) is not None:
                    ahead.append((int(i), self._pool.submit(load, i)))
                if not ahead:
                    return
                i, future = ahead.popleft()
                yield i, finish(future.result())
        finally:
            for _, future in ahead:  # the consumer stopped early: drop the decodes it will never use
                future.cancel()

    def close(self) -> None:
        """Stop the background threads (also done when the loader is garbage-collected)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def __del__(self) -> None:
        self.close()
