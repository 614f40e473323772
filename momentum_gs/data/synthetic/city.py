"""A procedural aerial city for the synthetic scene: layout, buildings, trees and their textures.

World frame: metres, z up, ground plane z = 0. The city is a grid of square blocks separated by roads,
centred on the origin; countryside (fields and tree clumps) surrounds it out to infinity. Every random
choice comes from one numpy Generator, so the seed fixes the whole city. Textures are functions of the
world position only (no view direction), so a model with view-independent colour can fit them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BOX_BUILDING, BOX_ROOFTOP, BOX_TRUNK = 0, 1, 2
SIDEWALK = 2.0  # metres of pavement along every block edge
FLOOR_HEIGHT = 3.5  # metres per storey (window rows)
FIELD_SIZE = 28.0  # metres per countryside field cell
GRAIN = 0.15  # metres a side of the squares the ground's grain varies over (City.ground_grain)
SURFACE_GRAIN = 0.5  # metres a side of the squares every surface's grain varies over (City.surface_grain)

FACADES = np.array([[0.80, 0.75, 0.66], [0.62, 0.36, 0.28], [0.70, 0.70, 0.72], [0.88, 0.86, 0.82],
                    [0.55, 0.61, 0.68], [0.78, 0.63, 0.46]])
ROOFS = np.array([[0.33, 0.33, 0.36], [0.62, 0.60, 0.56], [0.60, 0.31, 0.23], [0.38, 0.50, 0.33],
                  [0.80, 0.80, 0.80]])
FIELDS = np.array([[0.32, 0.46, 0.20], [0.45, 0.52, 0.25], [0.62, 0.56, 0.32], [0.24, 0.36, 0.17],
                   [0.50, 0.42, 0.30]])
ASPHALT, PAVEMENT, LOT, GRASS = (0.30, 0.30, 0.32), (0.66, 0.65, 0.62), (0.52, 0.50, 0.47), (0.30, 0.47, 0.20)
LANE_PAINT, METAL, BARK = (0.92, 0.86, 0.55), (0.72, 0.73, 0.74), (0.36, 0.26, 0.16)


@dataclass
class City:
    """The scene content: axis-aligned boxes, spheres and the parameters of the ground texture.

    Attributes:
        blocks: (bx, by) number of city blocks along x and y.
        block_size, road_width: metres; one block plus one road is the grid ``pitch``.
        park: [bx, by] bool, blocks that are parks (trees, no buildings).
        box_min, box_max: [B, 3] corners of the boxes (buildings, rooftop units, tree trunks), metres.
        box_kind: [B] int, BOX_BUILDING / BOX_ROOFTOP / BOX_TRUNK.
        box_color, box_roof, box_glass: [B, 3] albedos in [0, 1] of facade, roof and windows.
        box_window_pitch: [B] metres between window columns.
        sphere_center: [S, 3] tree canopy centres, metres; sphere_radius: [S]; sphere_color: [S, 3].
        field_color: [64, 64, 3] countryside field albedos, indexed by field cell modulo 64.
        ground_waves: [K, 4] (kx, ky, phase, amplitude) of the low-frequency ground noise (rad/m).
        detail_waves: [K, 5] (kx, ky, kz, phase, amplitude) of the canopy noise.
        ground_grain: the ground's albedo varies by up to this share (±) from one :data:`GRAIN` square to the next,
            as gravel, asphalt and grass do at a drone photo's pixel; 0: the ground's texture is its waves alone.
        surface_grain: the albedo of the ground, the roofs and the walls varies by up to this share (±) from one
            :data:`SURFACE_GRAIN` square to the next, in each surface's own plane: stains, tiles, patched asphalt,
            a texture a few pixels across that every photo can match; 0: none.
    """

    blocks: tuple[int, int]
    block_size: float
    road_width: float
    park: np.ndarray
    box_min: np.ndarray
    box_max: np.ndarray
    box_kind: np.ndarray
    box_color: np.ndarray
    box_roof: np.ndarray
    box_glass: np.ndarray
    box_window_pitch: np.ndarray
    sphere_center: np.ndarray
    sphere_radius: np.ndarray
    sphere_color: np.ndarray
    field_color: np.ndarray
    ground_waves: np.ndarray
    detail_waves: np.ndarray
    ground_grain: float = 0.0
    surface_grain: float = 0.0

    @property
    def pitch(self) -> float:
        """Metres from one road to the next."""
        return self.block_size + self.road_width

    @property
    def origin(self) -> np.ndarray:
        """[2] xy of the city's lower corner (outer edge of the first road), metres."""
        return -0.5 * self.size

    @property
    def size(self) -> np.ndarray:
        """[2] xy extent of the city including its border roads, metres."""
        return np.array(self.blocks, dtype=np.float64) * self.pitch + self.road_width

    def bounds(self) -> np.ndarray:
        """[2, 3] axis-aligned box (min, max) around the city and everything standing in it, metres."""
        top = max(self.box_max[:, 2].max(initial=0.0), (self.sphere_center[:, 2] + self.sphere_radius).max(initial=0.0))
        return np.array([[*self.origin, 0.0], [*(-self.origin), top]])


def _waves(rng: np.random.Generator, n: int, dims: int, wavelengths: tuple[float, float]) -> np.ndarray:
    """[n, dims + 2] random plane waves (wave vector, phase, amplitude) whose amplitudes sum to 1."""
    direction = rng.normal(size=(n, dims))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    wavelength = np.exp(rng.uniform(np.log(wavelengths[0]), np.log(wavelengths[1]), n))
    amplitude = wavelength / wavelength.sum()  # long waves dominate, like natural terrain
    return np.column_stack([direction * (2 * np.pi / wavelength)[:, None], rng.uniform(0, 2 * np.pi, n), amplitude])


def noise(points: np.ndarray, waves: np.ndarray) -> np.ndarray:
    """[N] smooth noise in [-1, 1] at ``points`` [N, D] (metres) from ``waves`` [K, D + 2]."""
    dims = points.shape[1]
    phase = (points @ waves[:, :dims].T + waves[:, dims]).astype(np.float32)  # float32 sin: twice as fast
    return np.sin(phase) @ waves[:, dims + 1].astype(np.float32)


def _jitter(rng: np.random.Generator, colour: np.ndarray, amount: float = 0.08) -> np.ndarray:
    """The colour with a small random per-channel gain, kept in [0, 1]."""
    return np.clip(colour * rng.uniform(1 - amount, 1 + amount, 3), 0.0, 1.0)


class _Builder:
    """Collects boxes and spheres while the layout functions draw them."""

    def __init__(self, rng: np.random.Generator):
        self.rng, self.boxes, self.spheres = rng, [], []

    def box(self, lo, hi, kind, colour, roof=(0, 0, 0), glass=(0, 0, 0), window_pitch=3.0) -> None:
        """Add a box from corner ``lo`` to ``hi`` (metres) with its kind and albedos (see ``City``)."""
        self.boxes.append((lo, hi, kind, colour, roof, glass, window_pitch))

    def tree(self, x: float, y: float, radius: float) -> None:
        """A trunk box under a canopy sphere; the canopy bottom sits 1-3 m above the ground."""
        trunk_height = self.rng.uniform(1.0, 3.0) + radius
        half = 0.12 * radius + 0.1
        bark = _jitter(self.rng, np.array(BARK))
        self.box((x - half, y - half, 0.0), (x + half, y + half, trunk_height), BOX_TRUNK, bark)
        green = np.array([0.20, 0.38, 0.14]) * self.rng.uniform(0.75, 1.25) + self.rng.uniform(-0.03, 0.03, 3)
        self.spheres.append(((x, y, trunk_height + 0.3 * radius), radius, np.clip(green, 0, 1)))


def _buildings(b: _Builder, lo: np.ndarray, hi: np.ndarray, max_height: float) -> None:
    """Fill one block interior (xy corners ``lo``, ``hi``) with 1-4 buildings, some with rooftop units."""
    rng = b.rng
    nx, ny = rng.integers(1, 3, size=2)
    edges_x, edges_y = np.linspace(lo[0], hi[0], nx + 1), np.linspace(lo[1], hi[1], ny + 1)
    for i in range(nx):
        for j in range(ny):
            setback = rng.uniform(0.8, 2.5, 4)
            x0, x1 = edges_x[i] + setback[0], edges_x[i + 1] - setback[1]
            y0, y1 = edges_y[j] + setback[2], edges_y[j + 1] - setback[3]
            height = float(np.clip(5.0 + rng.gamma(2.0, 5.0), 6.0, max_height))
            facade = _jitter(rng, FACADES[rng.integers(len(FACADES))])
            roof = _jitter(rng, ROOFS[rng.integers(len(ROOFS))])
            glass = _jitter(rng, np.array([0.13, 0.17, 0.24]), 0.2)
            b.box((x0, y0, 0.0), (x1, y1, height), BOX_BUILDING, facade, roof, glass, rng.uniform(2.6, 4.0))
            if rng.random() < 0.5 and min(x1 - x0, y1 - y0) > 6.0:
                w, d = rng.uniform(0.12, 0.28, 2) * (x1 - x0, y1 - y0)  # half sizes
                cx, cy = rng.uniform(x0 + 1.0 + w, x1 - 1.0 - w), rng.uniform(y0 + 1.0 + d, y1 - 1.0 - d)
                h = rng.uniform(1.0, 2.5)
                metal = _jitter(rng, np.array(METAL))
                b.box((cx - w, cy - d, height), (cx + w, cy + d, height + h), BOX_ROOFTOP, metal)


def _park(b: _Builder, lo: np.ndarray, hi: np.ndarray) -> None:
    """Scatter 5-12 trees over a park block."""
    for _ in range(b.rng.integers(5, 13)):
        radius = b.rng.uniform(1.6, 3.2)
        x, y = b.rng.uniform(lo + radius, hi - radius)
        b.tree(x, y, radius)


def _street_trees(b: _Builder, lo: np.ndarray, hi: np.ndarray) -> None:
    """Rows of small trees on some of the block's sidewalks, every 7 m."""
    inset = SIDEWALK / 2
    for axis in (0, 1):
        for side in (lo[1 - axis] + inset, hi[1 - axis] - inset):
            if b.rng.random() < 0.5:
                continue
            for s in np.arange(lo[axis] + 3.0, hi[axis] - 2.0, 7.0):
                x, y = (s, side) if axis == 0 else (side, s)
                b.tree(x, y, b.rng.uniform(1.1, 1.7))


def _countryside_trees(b: _Builder, size: np.ndarray) -> None:
    """Clumps of trees in a 45 m ring around the city (the edges of real drone captures)."""
    half = size / 2
    for _ in range(int(size.sum() / 12)):
        angle = b.rng.uniform(0, 2 * np.pi)
        direction = np.array([np.cos(angle), np.sin(angle)])
        scale = np.min(half / np.maximum(np.abs(direction), 1e-9))  # distance to the city border
        centre = direction * (scale + b.rng.uniform(8.0, 45.0))
        for _ in range(b.rng.integers(2, 7)):
            radius = b.rng.uniform(1.8, 3.5)
            b.tree(*(centre + b.rng.normal(0, 4.0, 2)), radius)


def make_city(rng: np.random.Generator, blocks: tuple[int, int], block_size: float = 24.0,
              road_width: float = 8.0, park_fraction: float = 0.2, max_height: float = 35.0) -> City:
    """A random city of ``blocks`` = (bx, by) blocks of ``block_size`` metres with roads between them."""
    b, pitch = _Builder(rng), block_size + road_width
    size = np.array(blocks, dtype=np.float64) * pitch + road_width
    park = rng.random(blocks) < park_fraction
    for i in range(blocks[0]):
        for j in range(blocks[1]):
            lo = -size / 2 + road_width + np.array([i, j]) * pitch
            hi = lo + block_size
            if park[i, j]:
                _park(b, lo + SIDEWALK, hi - SIDEWALK)
            else:
                _buildings(b, lo + SIDEWALK, hi - SIDEWALK, max_height)
            _street_trees(b, lo, hi)
    _countryside_trees(b, size)
    lo, hi, kind, colour, roof, glass, window_pitch = (np.array(v, dtype=np.float64) for v in zip(*b.boxes))
    centre, radius, canopy = (np.array(v, dtype=np.float64) for v in zip(*b.spheres))
    return City(tuple(blocks), block_size, road_width, park, lo, hi, kind.astype(np.int64), colour, roof, glass,
                window_pitch, centre, radius, canopy, FIELDS[rng.integers(len(FIELDS), size=(64, 64))]
                * rng.uniform(0.85, 1.15, (64, 64, 1)), _waves(rng, 12, 2, (6.0, 80.0)), _waves(rng, 10, 3, (0.8, 3.0)))


def _road_paint(along: np.ndarray, across: np.ndarray, road_width: float) -> np.ndarray:
    """[N] bool, the dashed centre line of a road (``across``: metres from the road edge)."""
    return (np.abs(across - road_width / 2) < 0.3) & (np.mod(along, 6.0) < 3.0)


def ground_albedo(city: City, xy: np.ndarray) -> np.ndarray:
    """[N, 3] albedo of the ground at ``xy`` [N, 2] (metres): roads, sidewalks, lots, parks, fields."""
    road, nb = city.road_width, np.array(city.blocks)
    cell = (xy - city.origin) / city.pitch
    index = np.floor(cell).astype(np.int64)
    q = (cell - index) * city.pitch  # metres into the current road + block cell
    inside = np.all((xy >= city.origin) & (xy <= -city.origin), axis=1)
    on_road = inside & np.any(q < road, axis=1)
    bi = np.clip(index, 0, nb - 1)
    edge = np.minimum(q - road, city.pitch - q).min(axis=1)  # metres to the block edge
    sidewalk = inside & ~on_road & (edge < SIDEWALK)
    park = inside & ~on_road & ~sidewalk & city.park[bi[:, 0], bi[:, 1]]
    lot = inside & ~on_road & ~sidewalk & ~park
    field = np.floor(xy / FIELD_SIZE).astype(np.int64) % 64
    out = city.field_color[field[:, 0], field[:, 1]]
    out[on_road], out[sidewalk], out[lot], out[park] = ASPHALT, PAVEMENT, LOT, GRASS
    only_x, only_y = on_road & (q[:, 1] >= road), on_road & (q[:, 0] >= road)  # roads along y / along x
    out[only_x & _road_paint(xy[:, 1], q[:, 0], road)] = LANE_PAINT
    out[only_y & _road_paint(xy[:, 0], q[:, 1], road)] = LANE_PAINT
    out = out * (1.0 + 0.18 * noise(xy, city.ground_waves))[:, None]
    if city.ground_grain:
        square = np.floor(xy / GRAIN).astype(np.int64)
        out = out * _gain(city.ground_grain, square[:, 0], square[:, 1])[:, None]
    return _surface_grain(city, out, xy, np.full(len(xy), 2))


def _gain(share: float, *ints: np.ndarray) -> np.ndarray:
    """[N] albedo factors within ±``share``, one for each combination of the integer arrays (:func:`_hash`)."""
    return 1.0 + share * (2.0 * _hash(*ints) - 1.0)


def _surface_grain(city: City, albedo: np.ndarray, p: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """``albedo`` [N, 3] times the surface grain at ``p`` [N, 3] (metres; the ground's [N, 2] xy will do, as a plane
    facing z reads x and y alone) on planes facing ``axis`` [N] (0, 1, 2: x, y, z): one factor per
    :data:`SURFACE_GRAIN` square of the two coordinates in the plane."""
    if not city.surface_grain:
        return albedo
    rows = np.arange(len(p))
    u = p[rows, np.where(axis == 0, 1, 0)]  # the plane's first and second coordinates
    v = p[rows, np.where(axis == 2, 1, 2)]
    square = np.floor(np.column_stack([u, v]) / SURFACE_GRAIN).astype(np.int64)
    return albedo * _gain(city.surface_grain, square[:, 0], square[:, 1], axis.astype(np.int64) + 7)[:, None]


def _hash(*ints: np.ndarray) -> np.ndarray:
    """[N] pseudo-random values in [0, 1) from integer arrays (a fixed integer hash, no state)."""
    h = np.zeros_like(ints[0], dtype=np.int64)
    for k, v in zip((73856093, 19349663, 83492791, 2654435761), ints):
        h = (h ^ (v.astype(np.int64) * k)) % 1_000_003
    return (h % 1000) / 1000.0


def _facade(city: City, idx: np.ndarray, p: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """[N, 3] albedo of building walls: facade colour with a grid of windows, none on the ground floor."""
    lo, hi = city.box_min[idx], city.box_max[idx]
    along_y = np.abs(normal[:, 0]) > 0.5  # walls facing ±x run along y
    u = np.where(along_y, p[:, 1] - lo[:, 1], p[:, 0] - lo[:, 0])
    width = np.where(along_y, hi[:, 1] - lo[:, 1], hi[:, 0] - lo[:, 0])
    pitch = city.box_window_pitch[idx]
    columns = np.floor(width / pitch)
    u = (u - 0.5 * (width - columns * pitch)) / pitch  # centre the window grid on the wall
    v = (p[:, 2] - lo[:, 2]) / FLOOR_HEIGHT
    col, row = np.floor(u), np.floor(v)
    window = ((u - col > 0.22) & (u - col < 0.78) & (v - row > 0.3) & (v - row < 0.82)
              & (col >= 0) & (col < columns) & (row >= 1) & (p[:, 2] < hi[:, 2] - 0.8))
    face = np.rint(normal[:, 0] + 2 * normal[:, 1]).astype(np.int64) + 3
    shine = 0.75 + 0.6 * _hash(idx, row.astype(np.int64), col.astype(np.int64), face)  # blinds, reflections
    return np.where(window[:, None], city.box_glass[idx] * shine[:, None], city.box_color[idx])


def box_albedo(city: City, idx: np.ndarray, p: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """[N, 3] albedo on boxes ``idx`` [N] at points ``p`` [N, 3] with outward face normals [N, 3]."""
    out = city.box_color[idx].copy()
    building = city.box_kind[idx] == BOX_BUILDING
    walls = building & (np.abs(normal[:, 2]) < 0.5)
    out[walls] = _facade(city, idx[walls], p[walls], normal[walls])
    roof = building & (normal[:, 2] > 0.5)
    lo, hi = city.box_min[idx[roof]], city.box_max[idx[roof]]
    edge = np.minimum(p[roof, :2] - lo[:, :2], hi[:, :2] - p[roof, :2]).min(axis=1)
    parapet = (edge < 0.6)[:, None]  # the low wall around a flat roof, in the facade colour
    out[roof] = np.where(parapet, city.box_color[idx[roof]], city.box_roof[idx[roof]])
    grained = walls | roof
    axis = np.argmax(np.abs(normal[grained]), axis=1)
    out[grained] = _surface_grain(city, out[grained], p[grained], axis)
    return out


def sphere_albedo(city: City, idx: np.ndarray, p: np.ndarray) -> np.ndarray:
    """[N, 3] albedo on tree canopies ``idx`` [N] at points ``p`` [N, 3]: green with leaf-clump blobs."""
    return city.sphere_color[idx] * (1.0 + 0.35 * noise(p, city.detail_waves))[:, None]
