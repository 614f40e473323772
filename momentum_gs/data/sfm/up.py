"""Which way is up in a reconstruction: every direction the photos suggest, each signed by the geometry, and
the one most of them agree on.

The photos suggest an up *axis* several ways (:func:`axes`): square to the cameras' level image rows (or
columns, for a camera mounted a quarter turn round) when they point several ways; the mean viewing direction
of cameras that all look one way; the ground plane of the sparse points; the plane of a flight flown at one
altitude; the cameras' image-up vectors. None of them says which way along the axis is up, and a
heuristic sign fails on some flight (a survey looking straight down in several headings has image-up vectors
that point every way). The sign comes from what holds for every photo of the ground (:func:`sign`): **the
cameras lie above the points they see**. The image-up vector only breaks the tie for eye-level captures,
whose cameras stand among what they see.

An axis one source suggests and no other confirms is not trusted when another source disagrees with it
(:func:`find_up`): a strip of oblique photos flown in one heading has a mean viewing direction 45° from
straight down, and its ground plane says so.

All arrays are float64; rotations [N, 3, 3] world-to-camera (OpenCV: rows are the image's x, y down and the
optical axis in the model's frame).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from momentum_gs.data.sfm.level import angle_deg

AGREE_DEG = 5.0  # two sources agree on up within this
NADIR = 0.9  # mean optical axis at least this long: the cameras all look one way (within ~25°)
SPREAD = 0.05  # image rows point several ways: second eigenvalue of their scatter at least this of the first
ROLL_MAX_DEG = 5.0  # RMS angle of the image rows out of their plane for them to count as level
COHERENT = 0.7  # length of the mean of unit vectors above which the cameras "agree" on a direction
FLAT, SPREAD_2D = 0.05, 0.2  # centres in a plane: 3rd singular value ≤ 5 % of the 2nd, the 2nd ≥ 20 % of the 1st
PLANE_CONE_DEG = 60.0  # the ground plane's normal lies within this of the cameras' mean viewing direction
PLANE_MIN_INLIERS = 0.2  # fraction of the sparse points on the ground plane
PLANE_TOLERANCE = 0.01  # inlier distance, fraction of the points' extent (5th to 95th percentile)
AERIAL_SIN = np.sin(np.radians(10.0))  # a camera sees its points from above: they lie at least 10° below it
AERIAL_SHARE = 0.8  # an aerial capture: this share of the cameras see their points from one side
TIE_BREAK = 0.1  # the mean image-up must have at least this along an axis to sign it


@dataclass
class Views:
    """What a reconstruction shows of its cameras: orientations, centres, the median of the points each camera
    sees (NaN rows for a camera that sees none), and the sparse points."""

    rotations: np.ndarray  # [N, 3, 3]
    centres: np.ndarray  # [N, 3]
    seen: np.ndarray  # [N, 3]
    points: np.ndarray  # [P, 3]

    def look(self) -> np.ndarray:
        return self.rotations[:, 2, :].mean(0)

    def image_up(self) -> np.ndarray:
        return -self.rotations[:, 1, :].mean(0)  # OpenCV's y points down the image


@dataclass
class Up:
    """A signed up direction, what suggested it, how its sign was found and which other sources agree."""

    axis: np.ndarray  # [3] unit
    source: str
    signed_by: str
    agreeing: list[str] = field(default_factory=list)

    def describe(self) -> str:
        also = f", confirmed by {' and '.join(self.agreeing)}" if self.agreeing else ""
        return f"{self.source}{also}; its sign from {self.signed_by}"


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def elevation(views: Views, axis: np.ndarray) -> np.ndarray:
    """[N] sine of the angle each camera stands above the median of what it sees, along ``axis`` (NaN for a
    camera that sees nothing): 1 straight above, 0 level with it, negative below. Without ``seen`` (all NaN),
    the median of all the points stands in."""
    seen = views.seen
    if not np.isfinite(seen).any() and len(views.points):
        seen = np.broadcast_to(np.median(views.points, 0), views.centres.shape)
    offset = views.centres - seen
    return offset @ _unit(axis) / np.maximum(np.linalg.norm(offset, axis=1), 1e-12)


def aerial_side(views: Views, axis: np.ndarray) -> int:
    """+1 when the cameras stand above what they see along ``axis`` (an aerial capture), -1 when below, 0
    when neither holds for ``AERIAL_SHARE`` of them (an eye-level capture)."""
    e = elevation(views, axis)
    e = e[np.isfinite(e)]
    if not len(e):
        return 0
    for side in (1, -1):
        if (side * e >= AERIAL_SIN).mean() >= AERIAL_SHARE:
            return side
    return 0


def sign(views: Views, axis: np.ndarray) -> tuple[np.ndarray | None, str]:
    """(``axis`` signed to point up, or None when nothing signs it; what signed it)."""
    side = aerial_side(views, axis)
    if side:
        return side * _unit(axis), "the cameras standing above the points they see"
    along = float(views.image_up() @ _unit(axis))
    if abs(along) >= TIE_BREAK:
        return np.sign(along) * _unit(axis), "the cameras' image-up vectors (an eye-level capture)"
    return None, "nothing: the cameras are neither above what they see nor agree on their image-up"


def _level_axis(vectors: np.ndarray) -> np.ndarray | None:
    """The normal of the plane holding the [N, 3] unit ``vectors`` (image rows or columns) when they lie in one
    within ``ROLL_MAX_DEG`` and point several ways in it, else None."""
    evals, evecs = np.linalg.eigh(vectors.T @ vectors / len(vectors))
    roll = float(np.degrees(np.arcsin(np.sqrt(max(evals[0], 0.0)))))
    return evecs[:, 0] if evals[1] >= SPREAD * evals[2] and roll <= ROLL_MAX_DEG else None


def flight_plane(centres: np.ndarray) -> np.ndarray | None:
    """The normal of the plane of the camera centres when they spread over an area at one height, else None."""
    if len(centres) < 4:
        return None
    sv, vt = np.linalg.svd(centres - centres.mean(0), full_matrices=False)[1:]
    return vt[2] if sv[1] >= SPREAD_2D * sv[0] and sv[2] <= FLAT * sv[1] else None


def dominant_plane(points: np.ndarray, around: np.ndarray, rng: np.random.Generator,
                   trials: int = 400) -> np.ndarray | None:
    """Unit normal of the plane holding the most sparse points among planes within ``PLANE_CONE_DEG`` of
    ``around``, or None when no plane holds ``PLANE_MIN_INLIERS`` of them."""
    if len(points) < 30:
        return None
    pts = points[rng.choice(len(points), min(len(points), 20000), replace=False)]
    lo, hi = np.percentile(pts, [5, 95], axis=0)
    tolerance = PLANE_TOLERANCE * max(float(np.linalg.norm(hi - lo)), 1e-12)
    a, b, c = (pts[rng.integers(0, len(pts), trials)] for _ in range(3))
    normals = np.cross(b - a, c - a)
    length = np.linalg.norm(normals, axis=1)
    ok = length > 1e-12
    normals, anchors = normals[ok] / length[ok, None], a[ok]
    within = np.abs(normals @ _unit(around)) >= np.cos(np.radians(PLANE_CONE_DEG))
    normals, anchors = normals[within], anchors[within]
    if not len(normals):
        return None
    counts = (np.abs((pts[None] - anchors[:, None]) @ normals[..., None])[..., 0] < tolerance).sum(1)
    best = int(np.argmax(counts))
    inliers = np.abs((pts - anchors[best]) @ normals[best]) < tolerance
    if inliers.mean() < PLANE_MIN_INLIERS:
        return None
    on = pts[inliers]
    return np.linalg.svd(on - on.mean(0), full_matrices=False)[2][2]


def axes(views: Views, seed: int = 0) -> list[tuple[np.ndarray, str]]:
    """(unsigned unit axis, what suggested it) for every source that suggests one, in order of trust."""
    found = []
    rows, columns = _level_axis(views.rotations[:, 0, :]), _level_axis(views.rotations[:, 1, :])
    if rows is not None:
        found.append((rows, "the cameras' level image rows"))
    if columns is not None:
        found.append((columns, "the cameras' level image columns (a camera mounted a quarter turn round)"))
    plane = flight_plane(views.centres)
    if plane is not None:
        found.append((plane, "the plane of the flight"))
    look = views.look()
    if np.linalg.norm(look) >= NADIR:
        found.append((_unit(look), "the cameras' mean viewing direction (a nadir survey)"))
    if np.linalg.norm(look) >= COHERENT:
        normal = dominant_plane(views.points, look, np.random.default_rng(seed))
        if normal is not None:
            found.append((normal, "the ground plane of the sparse points"))
    if np.linalg.norm(views.image_up()) >= COHERENT:
        found.append((_unit(views.image_up()), "the cameras' image-up vectors"))
    return found


def find_up(views: Views, votes: list[tuple[np.ndarray, str]] = (), seed: int = 0) -> tuple[list[Up], str]:
    """(the up candidates, best first, or [] when the photos do not say; what was found).

    Each source's axis is signed by :func:`sign`; the best is the one most others agree with (within
    ``AGREE_DEG``; ``votes``, such as the GPS altitudes' up, count as agreement but are never chosen), the
    first in :func:`axes`' order among equals. When several sources disagree and none is confirmed, the
    photos do not say which way is up. The rest follow, each best of what is left, for a refit when the best
    fails the checks."""
    signed, unsigned = [], []
    for axis, source in axes(views, seed):
        up, how = sign(views, axis)
        (signed if up is not None else unsigned).append(Up(up, source, how) if up is not None else source)
    if not signed:
        why = (f"{unsigned[0]} gives an axis but {sign(views, axes(views, seed)[0][0])[1]}" if unsigned
               else "the photos do not show which way is up (their views and image rows point every way)")
        return [], why
    for up in signed:
        up.agreeing = [o.source for o in signed if o is not up and angle_deg(o.axis, up.axis) <= AGREE_DEG]
        up.agreeing += [name for v, name in votes if angle_deg(v, up.axis) <= AGREE_DEG]
    ranked = sorted(signed, key=lambda u: -len(u.agreeing))  # stable: axes' order among equals
    if len(signed) > 1 and not ranked[0].agreeing:
        listed = "; ".join(f"{u.source} {angle_deg(u.axis, ranked[0].axis):.0f}° from the first" for u in ranked[1:])
        return [], (f"the photos disagree on which way is up and no two sources agree: {ranked[0].source}; "
                    f"{listed}")
    return ranked, ranked[0].describe()
