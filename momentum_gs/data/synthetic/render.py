"""Ray casting and shading of the synthetic city, vectorised in numpy.

Every ray is tested against the ground plane z = 0, then against each box and sphere, but only the rays
inside the primitive's screen footprint: rays carry a 2D key (the pixel for camera rays, the coordinates
across the sun direction for shadow rays), each primitive is bounded by a key-space rectangle, and the
rays sorted by their first key give the candidates with a binary search. Shading is Lambertian under a
fixed sun plus an ambient term, with cast shadows, so the colour of a surface point does not depend on
the view.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from momentum_gs.data.synthetic.city import City, box_albedo, ground_albedo, sphere_albedo

SUN = np.array([np.cos(np.radians(55)) * np.cos(np.radians(35)), np.cos(np.radians(55)) * np.sin(np.radians(35)),
                np.sin(np.radians(55))])  # unit vector towards the sun: elevation 55°, azimuth 35°
SUN_COLOR, AMBIENT = np.array([0.66, 0.64, 0.60]), np.array([0.42, 0.44, 0.48])
SKY = np.array([0.70, 0.80, 0.92])
NEAR = 1e-3  # metres; primitives with a corner this close to the camera plane are tested on every ray


@dataclass
class Hits:
    """Nearest intersections of N rays.

    Attributes:
        t: [N] distance along the unit ray direction, metres (inf where the ray hits nothing).
        prim: [N] int64: -1 sky, 0 ground, 1..B boxes (index + 1), B+1..B+S spheres (index + B + 1).
        normal: [N, 3] outward unit surface normal at the hit (zero on sky).
    """

    t: np.ndarray
    prim: np.ndarray
    normal: np.ndarray


def _prim_aabbs(city: City) -> tuple[np.ndarray, np.ndarray]:
    """[P, 3] min and max corners of all boxes then all spheres."""
    r = city.sphere_radius[:, None]
    return (np.concatenate([city.box_min, city.sphere_center - r]),
            np.concatenate([city.box_max, city.sphere_center + r]))


def _corners(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """[P, 8, 3] corners of P axis-aligned boxes."""
    bits = np.array([[i >> 2 & 1, i >> 1 & 1, i & 1] for i in range(8)], dtype=bool)
    return np.where(bits[None], hi[:, None], lo[:, None])


def _hit_box(o: np.ndarray, d: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Slab test: [n] entry distance (inf on a miss) and [n, 3] entry-face normal of rays o + t d."""
    inv = 1.0 / np.where(np.abs(d) < 1e-12, 1e-12, d)
    t0, t1 = (lo - o) * inv, (hi - o) * inv
    t_in, t_out = np.minimum(t0, t1), np.maximum(t0, t1)
    # the three axes compared pairwise rather than reduced over a last axis of 3: the same values, faster
    near = np.maximum(np.maximum(t_in[:, 0], t_in[:, 1]), t_in[:, 2])
    far = np.minimum(np.minimum(t_out[:, 0], t_out[:, 1]), t_out[:, 2])
    t = np.where((near <= far) & (near > 1e-6), near, np.inf)
    axis = np.where(t_in[:, 0] == near, 0, np.where(t_in[:, 1] == near, 1, 2))  # argmax's first maximum
    rows = np.arange(len(d))
    normal = np.zeros_like(d)
    normal[rows, axis] = -np.sign(d[rows, axis])
    return t, normal


def _hit_sphere(o: np.ndarray, d: np.ndarray, centre: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """[n] entry distance (inf on a miss) and [n, 3] outward normal of unit rays o + t d on one sphere."""
    oc = o - centre
    b = np.einsum("ij,ij->i", oc, d) if oc.ndim == 2 else d @ oc
    disc = b * b - (np.sum(oc * oc, axis=-1) - radius * radius)
    t = -b - np.sqrt(np.maximum(disc, 0.0))
    t = np.where((disc > 0) & (t > 1e-6), t, np.inf)
    normal = (o + np.where(np.isfinite(t), t, 0.0)[:, None] * d - centre) / radius
    return t, normal


def _cast(city: City, hits: Hits, o: np.ndarray, d: np.ndarray, key: np.ndarray, rects: np.ndarray) -> None:
    """Update ``hits`` in place with every box and sphere.

    o: [3] or [N, 3] origins; d: [N, 3] unit directions; key: [N, 2] ray keys; rects: [P, 4] key-space
    bounds (u0, u1, v0, v1) of each primitive's footprint (infinite for "test every ray").
    """
    order = np.argsort(key[:, 0], kind="stable")
    u_sorted, n_boxes = key[order, 0], len(city.box_min)
    lo = np.searchsorted(u_sorted, rects[:, 0], side="left")
    hi = np.searchsorted(u_sorted, rects[:, 1], side="right")
    v = np.ascontiguousarray(key[:, 1])
    v_min, v_max = v.min(initial=np.inf), v.max(initial=-np.inf)
    for p in np.flatnonzero((hi > lo) & (rects[:, 2] <= v_max) & (rects[:, 3] >= v_min)):
        ray = order[lo[p]:hi[p]]
        v_ray = v[ray]
        ray = ray[(v_ray >= rects[p, 2]) & (v_ray <= rects[p, 3])]
        if len(ray) == 0:
            continue
        ray_o = o[ray] if o.ndim == 2 else o
        if p < n_boxes:
            t, normal = _hit_box(ray_o, d[ray], city.box_min[p], city.box_max[p])
        else:
            s = p - n_boxes
            t, normal = _hit_sphere(ray_o, d[ray], city.sphere_center[s], city.sphere_radius[s])
        closer = t < hits.t[ray]
        ray = ray[closer]
        hits.t[ray], hits.prim[ray], hits.normal[ray] = t[closer], p + 1, normal[closer]


def camera_rays(K: np.ndarray, world_to_cam: np.ndarray, pix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Origin [3] and unit world directions [N, 3] of the rays through image points ``pix`` [N, 2] (x, y pixels)."""
    R, t = world_to_cam[:3, :3], world_to_cam[:3, 3]
    cam = np.column_stack([(pix[:, 0] - K[0, 2]) / K[0, 0], (pix[:, 1] - K[1, 2]) / K[1, 1], np.ones(len(pix))])
    d = cam @ R  # = (R.T @ cam.T).T, camera to world
    return -R.T @ t, d / np.linalg.norm(d, axis=1, keepdims=True)


def cast_camera(city: City, K: np.ndarray, world_to_cam: np.ndarray,
                pix: np.ndarray) -> tuple[Hits, np.ndarray, np.ndarray]:
    """Nearest hits of the rays through image points ``pix`` [N, 2] (x, y pixels; pixel (i, j) has its centre
    at (j + 0.5, i + 0.5)), with the rays' origin [3] and unit world directions [N, 3]."""
    o, d = camera_rays(K, world_to_cam, pix)
    t_ground = np.where(d[:, 2] < -1e-9, -o[2] / np.minimum(d[:, 2], -1e-9), np.inf)
    hits = Hits(t_ground, np.where(np.isfinite(t_ground), 0, -1), np.zeros_like(d))
    hits.normal[np.isfinite(t_ground), 2] = 1.0
    lo, hi = _prim_aabbs(city)
    cam = _corners(lo, hi) @ world_to_cam[:3, :3].T + world_to_cam[:3, 3]  # [P, 8, 3]
    z = cam[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u, v = K[0, 0] * cam[..., 0] / z + K[0, 2], K[1, 1] * cam[..., 1] / z + K[1, 2]
    rects = np.stack([u.min(1), u.max(1), v.min(1), v.max(1)], axis=1)
    rects[(z <= NEAR).any(axis=1)] = [-np.inf, np.inf, -np.inf, np.inf]
    rects[(z <= NEAR).all(axis=1)] = [np.inf, -np.inf, np.inf, -np.inf]  # wholly behind: no ray
    _cast(city, hits, o, d, pix, rects)
    return hits, o, d


def top_down(city: City, xy: np.ndarray, top: float, shadows: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The true orthophoto of the city: [N, 3] colours (as the photos shade them) and [N] heights (metres) of the
    surfaces first met by vertical rays falling from height ``top`` through ground points ``xy`` [N, 2] metres."""
    o = np.column_stack([xy, np.full(len(xy), float(top))])
    d = np.broadcast_to(np.array([0.0, 0.0, -1.0]), o.shape)
    hits = Hits(np.full(len(o), float(top)), np.zeros(len(o), np.int64), np.tile([0.0, 0.0, 1.0], (len(o), 1)))
    lo, hi = _prim_aabbs(city)
    _cast(city, hits, o, d, np.asarray(xy, np.float64), np.column_stack([lo[:, 0], hi[:, 0], lo[:, 1], hi[:, 1]]))
    return shade(city, hits, o, d, shadows), top - hits.t


def in_shadow(city: City, points: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """[N] bool: the sun is blocked by a box or sphere for surface ``points`` [N, 3] with ``normals`` [N, 3]."""
    e1 = np.cross(SUN, [0.0, 0.0, 1.0])
    e1 /= np.linalg.norm(e1)
    basis = np.stack([e1, np.cross(SUN, e1)], axis=1)  # [3, 2] across the sun direction
    o = points + 1e-3 * normals  # leave the surface so it does not shadow itself
    hits = Hits(np.full(len(o), np.inf), np.full(len(o), -1), np.zeros_like(o))
    key = _corners(*_prim_aabbs(city)) @ basis  # [P, 8, 2]
    rects = np.stack([key[..., 0].min(1), key[..., 0].max(1), key[..., 1].min(1), key[..., 1].max(1)], axis=1)
    _cast(city, hits, o, np.broadcast_to(SUN, o.shape), o @ basis, rects)
    return np.isfinite(hits.t)


def shade(city: City, hits: Hits, o: np.ndarray, d: np.ndarray, shadows: bool = True) -> np.ndarray:
    """[N, 3] linear colour in [0, 1] seen along rays o + t d with their ``hits``: albedo × (ambient + sun)."""
    points = o + np.where(np.isfinite(hits.t), hits.t, 0.0)[:, None] * d
    albedo = np.tile(SKY, (len(d), 1))
    n_boxes = len(city.box_min)
    ground, box = hits.prim == 0, (hits.prim >= 1) & (hits.prim <= n_boxes)
    sphere = hits.prim > n_boxes
    albedo[ground] = ground_albedo(city, points[ground, :2])
    albedo[box] = box_albedo(city, hits.prim[box] - 1, points[box], hits.normal[box])
    albedo[sphere] = sphere_albedo(city, hits.prim[sphere] - 1 - n_boxes, points[sphere])
    lambert = np.clip(hits.normal @ SUN, 0.0, None)
    if shadows:
        lit = np.flatnonzero(lambert > 0)
        lambert[lit[in_shadow(city, points[lit], hits.normal[lit])]] = 0.0
    light = AMBIENT + lambert[:, None] * SUN_COLOR
    light[hits.prim < 0] = 1.0  # the sky is its own light
    return np.clip(albedo * light, 0.0, 1.0)


def render(city: City, K: np.ndarray, world_to_cam: np.ndarray, width: int, height: int,
           supersample: int = 2, shadows: bool = True, with_depth: bool = False):
    """[height, width, 3] float colour image in [0, 1], each pixel the mean of supersample² rays; with
    ``with_depth`` also the [height, width] camera-space z of the surfaces (the city's units, the mean over the
    pixel's rays; inf where a ray sees the sky)."""
    s = supersample
    K_fine = np.diag([s, s, 1.0]) @ K  # the same view at s times the resolution
    jj, ii = np.meshgrid(np.arange(width * s) + 0.5, np.arange(height * s) + 0.5)
    pix = np.column_stack([jj.ravel(), ii.ravel()])
    hits, o, d = cast_camera(city, K_fine, world_to_cam, pix)
    fine = shade(city, hits, o, d, shadows).reshape(height, s, width, s, 3)
    if not with_depth:
        return fine.mean(axis=(1, 3))
    z = hits.t * (d @ world_to_cam[2, :3])  # distance along the ray → depth along the optical axis
    return fine.mean(axis=(1, 3)), z.reshape(height, s, width, s).mean(axis=(1, 3))
