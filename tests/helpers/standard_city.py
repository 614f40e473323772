"""A generated city of standard 3D Gaussians, made block by block: a scene of any size for the 3D Tiles export's
tests and benchmarks (scripts/bench_tiles_memory.py, scripts/bench_tile_levels.py), without a trained run. (The
viewer's generated city, of anchors and a decoder, is tests/helpers/generated_city.py.)

The blocks are squares of ``block_size`` metres on a grid (as many columns as the square root of the block
count, rounded up), world frame z up, ground at z = 0. Each block holds a ground plane (40 % of its Gaussians)
and 4 to 9 box-shaped buildings (the rest, spread over their walls and roofs by area). Every Gaussian is a flat
disc lying in its surface (its smallest scale along the surface's normal, a tenth of the others), turned by a
random angle about that normal and tilted a little; its scales vary around the spacing the count gives;
its colour is the surface's (asphalt and grass on the ground, a facade colour per building with darker floors
every 3.5 m, darker roofs) with random view-dependent SH coefficients of the higher degrees; its opacity is
uniform in [0.3, 1]. Block ``b`` depends only on ``(seed, b)``: a block is made when it is asked for.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch

from momentum_gs.model.standard import SH_C0, StandardGaussians

GROUND_SHARE = 0.4  # of each block's Gaussians
FACADES = np.array([[0.80, 0.75, 0.66], [0.62, 0.36, 0.28], [0.70, 0.70, 0.72], [0.88, 0.86, 0.82],
                    [0.55, 0.61, 0.68]])
ASPHALT, GRASS = np.array([0.30, 0.30, 0.32]), np.array([0.30, 0.47, 0.20])


def generated_city(num_blocks: int, per_block: int, degree: int = 3, seed: int = 0,
                   block_size: float = 100.0) -> Iterator[StandardGaussians]:
    """``num_blocks`` blocks of ``per_block`` Gaussians each (SH ``degree``), made one at a time as the
    iterator is read (see the module notes)."""
    columns = math.ceil(math.sqrt(num_blocks))
    for b in range(num_blocks):
        yield city_block(b, columns, per_block, degree, seed, block_size)


def city_block(block: int, columns: int, count: int, degree: int = 3, seed: int = 0,
               block_size: float = 100.0) -> StandardGaussians:
    """Block ``block`` of the generated city (``columns`` blocks per row): ``count`` Gaussians, world units."""
    rng = np.random.default_rng([seed, block])
    corner = np.array([block % columns, block // columns, 0.0]) * block_size
    faces = _faces(rng, corner, block_size)
    ground = int(round(count * GROUND_SHARE))
    walls = faces["area"][1:]
    built = 1 + rng.choice(len(walls), count - ground, p=walls / walls.sum())
    face = np.concatenate([np.zeros(ground, np.int64), built])
    a, b = rng.random((2, count, 1))
    means = faces["corner"][face] + a * faces["u"][face] + b * faces["v"][face]
    spacing = math.sqrt(faces["area"][0] / max(ground, 1))
    size = spacing * np.exp(rng.normal(0.0, 0.3, (count, 3)))
    normal = faces["normal"][face]
    size[np.arange(count), normal] *= 0.1
    quats = _spin_and_tilt(rng, normal)
    colour = faces["colour"][face]
    on_ground = face == 0
    grass = 0.5 + 0.5 * np.sin(means[:, 0] / 7.0) * np.cos(means[:, 1] / 5.0) > 0.6
    colour[on_ground] = np.where(grass[on_ground, None], GRASS, ASPHALT)
    floors = (normal != 2) & (np.floor(means[:, 2] / 1.75) % 2 == 1)
    colour[floors] *= 0.6
    colour = np.clip(colour + rng.normal(0.0, 0.03, colour.shape), 0.0, 1.0)
    sh = rng.normal(0.0, 0.05, (count, (degree + 1) ** 2, 3))
    sh[:, 0] = (colour - 0.5) / SH_C0
    tensor = lambda x: torch.from_numpy(np.ascontiguousarray(x, np.float32))  # noqa: E731
    return StandardGaussians(tensor(means), tensor(quats), tensor(size), tensor(rng.uniform(0.3, 1.0, count)),
                             tensor(sh))


def _faces(rng: np.random.Generator, corner: np.ndarray, block_size: float) -> dict[str, np.ndarray]:
    """The block's surfaces as rectangles (corner + [0, 1]·u + [0, 1]·v): the ground first, then each
    building's roof and four walls. Arrays: corner, u, v [F, 3], area [F], normal [F] (the axis, 0 1 2),
    colour [F, 3]."""
    rects = [(corner, [block_size, 0, 0], [0, block_size, 0], 2, ASPHALT)]
    for _ in range(int(rng.integers(4, 10))):
        w, d = rng.uniform(8.0, 25.0, 2)
        h = rng.uniform(10.0, 60.0)
        x, y = corner[:2] + rng.uniform(5.0, block_size - 30.0, 2)
        facade = FACADES[rng.integers(len(FACADES))]
        rects.append(([x, y, h], [w, 0, 0], [0, d, 0], 2, facade * 0.5))  # roof
        for side in (0.0, 1.0):
            rects.append(([x + side * w, y, 0], [0, d, 0], [0, 0, h], 0, facade))
            rects.append(([x, y + side * d, 0], [w, 0, 0], [0, 0, h], 1, facade))
    corner_, u, v, normal, colour = (np.array(column, np.float64) for column in zip(*rects))
    return {"corner": corner_, "u": u, "v": v, "normal": normal.astype(np.int64), "colour": colour,
            "area": np.linalg.norm(np.cross(u, v), axis=1)}


def _spin_and_tilt(rng: np.random.Generator, normal: np.ndarray) -> np.ndarray:
    """[M, 4] unit quaternions (w first): a random turn about each Gaussian's ``normal`` axis (its thin axis
    stays in place), then a small random tilt."""
    count = len(normal)
    half = rng.uniform(0.0, math.pi, count)
    spin = np.zeros((count, 4))
    spin[:, 0] = np.cos(half)
    spin[np.arange(count), 1 + normal] = np.sin(half)
    tilt = np.concatenate([np.ones((count, 1)), rng.normal(0.0, 0.05, (count, 3))], 1)
    tilt /= np.linalg.norm(tilt, axis=1, keepdims=True)
    return _product(tilt, spin)


def _product(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """[M, 4] Hamilton products p ⊗ q of quaternions (w first)."""
    pw, px, py, pz = p.T
    qw, qx, qy, qz = q.T
    return np.stack([pw * qw - px * qx - py * qy - pz * qz, pw * qx + px * qw + py * qz - pz * qy,
                     pw * qy - px * qz + py * qw + pz * qx, pw * qz + px * qy - py * qx + pz * qw], 1)
