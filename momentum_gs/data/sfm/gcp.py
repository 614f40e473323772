"""Ground control points for `mgs sfm --gcp FILE`: OpenDroneMap's ``gcp_list.txt``, read and checked line by
line, its coordinates turned into WGS84, the points triangulated in the model and the similarity that fits them.

The file: the first line (blank and ``#`` lines skipped) names the projection of the coordinates
(``EPSG:4326``: longitude, latitude, ellipsoidal height; ``WGS84 UTM 32N``, ``EPSG:32632`` or ``EPSG:32732``:
UTM easting, northing, height; anything else, such as a PROJ string, needs pyproj); each further line is
``geo_x geo_y geo_z im_x im_y image_name [gcp_name] [extra...]``, one per photo a point is marked on, with
pixels counted from the top-left corner of the original photo. UTM is converted by :mod:`momentum_gs.data.utm`; a UTM
height goes through unchanged.

OpenDroneMap leaves ``extra1 extra2`` free. When both are numbers they are read as the point's survey accuracy,
horizontal (per axis) then vertical, metres: the order of ODM's own ``geo.txt`` accuracy columns and of Pix4D's
GCP files. A point without them gets the adjustment's default.

All arrays are float64: geo [M, 3], pixels [2], world-to-camera [3, 4], model points [3].
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from momentum_gs.data.sfm.level import similarity
from momentum_gs.data.utm import utm_to_wgs84
from momentum_gs.errors import UserError, listing, one_line
from momentum_gs.io.atomic import atomic_write_text
from momentum_gs.io.schema import read_text

MAX_GCP_BYTES = 16 << 20  # a GCP list of 200,000 lines; a larger file is not one
PARALLEL_DEG = 1.0  # rays within this of each other do not fix a point's depth
COLLINEAR = 0.01  # GCPs whose spread across their line is below this fraction of the spread along it
ACCURACY_M = (1e-4, 10.0)  # a survey accuracy (metres) in the extras: 0.1 mm to 10 m, else it is not one
ALTITUDE = (-12_000.0, 100_000.0)  # heights a GCP can have (metres): the ocean floor to the edge of space
PROJECTIONS = ("EPSG:4326, WGS84 UTM 32N, EPSG:32632 (UTM north; EPSG:327zz south) or a PROJ string "
               "(+proj=utm +zone=32 +datum=WGS84)")


@dataclass
class Gcp:
    """One ground control point: its position in the file's projection and the photos it is marked on."""

    name: str  # the file's gcp_name, or "line N" (its first line) for points the file leaves unnamed
    geo: np.ndarray  # [3] in the file's projection; the height may be NaN
    marks: list[tuple[str, np.ndarray]] = field(default_factory=list)  # (image name, [2] pixel x, y)
    line: int = 0  # the line it first appears on
    accuracy: np.ndarray | None = None  # [2] metres, horizontal (per axis) and vertical, as the file gives; or None


@dataclass
class Control:
    """A GCP list as a run uses it: its projection, its points, and their positions in WGS84, converted once."""

    projection: str
    gcps: list[Gcp]
    lla: np.ndarray  # [M, 3] latitude°, longitude°, height m (NaN where the file gives none) of each GCP


def check_marks(control: Control, photos: list[str], damaged: dict[str, str], source: str | Path) -> None:
    """Refuse, in one line and before any work, a GCP list (read from ``source``) whose marks name photos that are
    not among ``photos`` (the staged names); ``damaged``: photos left out as unreadable, said as such."""
    known = set(photos)
    missing = sorted({image for gcp in control.gcps for image, _ in gcp.marks if image not in known})
    if not missing:
        return
    lower = {name.lower(): name for name in photos}
    hints = [f"{name} (damaged: {damaged[name]})" if name in damaged else
             f"{name} (the folder has {lower[name.lower()]})" if name.lower() in lower else name for name in missing]
    marks = sum(len(gcp.marks) for gcp in control.gcps)
    raise UserError(f"{source}: {len(missing)} of the photos its marks name are not among the {len(photos)} photos: "
                    f"{listing(hints, 5)}; give the marks on photos of the folder by their file names "
                    f"({marks} marks in all)")


def read_control(path: Path) -> Control:
    """The GCP list at ``path``, read and converted to WGS84 (a UserError for a bad file or position)."""
    projection, gcps = read_gcp_list(path)
    return Control(projection, gcps, to_wgs84(projection, np.stack([g.geo for g in gcps])))

def projection_kind(line: str) -> tuple[str, int, bool] | None:
    """("wgs84", 0, False), ("utm", zone, south) or ("pyproj", 0, False) for a projection line; None for a line
    that names no projection."""
    text = line.strip()
    if re.fullmatch(r"(?i)epsg:\s*4326", text):
        return "wgs84", 0, False
    named = re.fullmatch(r"(?i)wgs\s*-?\s*84\s+utm\s+(\d{1,2})\s*([ns])", text)
    if named:
        zone = int(named.group(1))
        return ("utm", zone, named.group(2).upper() == "S") if 1 <= zone <= 60 else None
    code = re.fullmatch(r"(?i)epsg:\s*32([67])(\d\d)", text)
    if code and 1 <= int(code.group(2)) <= 60:
        return "utm", int(code.group(2)), code.group(1) == "7"
    return _proj_utm(text)


def _proj_utm(text: str) -> tuple[str, int, bool] | None:
    """A PROJ string that is plain WGS84 UTM as ("utm", zone, south); another PROJ string, an AUTHORITY:code or
    WKT as ("pyproj", 0, False); None for anything else."""
    if text.startswith("+"):
        keys = dict((p.lstrip("+").split("=", 1) + [""])[:2] for p in text.split())
        plain = {"proj", "zone", "south", "datum", "ellps", "units", "no_defs", "type", "north"}
        if (keys.get("proj") == "utm" and set(keys) <= plain and keys.get("zone", "").isdigit()
                and 1 <= int(keys["zone"]) <= 60 and "WGS84" in (keys.get("datum"), keys.get("ellps"))
                and keys.get("units", "m") == "m" and keys.get("type", "crs") == "crs"):
            return "utm", int(keys["zone"]), "south" in keys
        return "pyproj", 0, False
    if re.fullmatch(r"[A-Za-z]+:\s*\d+", text) or re.match(r"(?i)(PROJCS|PROJCRS|GEOGCS|GEOGCRS|COMPOUNDCRS)\[", text):
        return "pyproj", 0, False
    return None


def geo_problem(kind: str, geo: np.ndarray) -> str | None:
    """What is wrong with a [3] position in a built-in projection (``kind`` from :func:`projection_kind`), or
    None."""
    x, y, z = geo
    if np.isfinite(z) and not ALTITUDE[0] <= z <= ALTITUDE[1]:
        return f"height {z:g} m is outside {ALTITUDE[0]:g} to {ALTITUDE[1]:g} m"
    if kind == "wgs84" and not (abs(y) <= 90 and abs(x) <= 180):
        return (f"longitude {x:g}, latitude {y:g} is not a place on Earth (EPSG:4326 lines give longitude first, "
                "then latitude)")
    if kind == "utm" and not (0 <= x <= 1_000_000 and 0 <= y <= 10_000_000):
        return (f"easting {x:g} m, northing {y:g} m is not in a UTM zone (easting 0 to 1,000,000 m, northing 0 to "
                "10,000,000 m: easting first)")
    return None


def _short(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _numbers(fields: list[str], where: str) -> tuple[np.ndarray, np.ndarray]:
    """([3] geo, [2] pixel) from a line's first five fields; NaN is allowed for geo_z alone."""
    names = ("geo_x", "geo_y", "geo_z", "im_x", "im_y")
    values = []
    for i, (name, text) in enumerate(zip(names, fields)):
        try:
            value = float(text)
        except ValueError:
            raise UserError(f"{where}: {name} {_short(text)} is not a number") from None
        if not np.isfinite(value) and not (i == 2 and np.isnan(value)):
            raise UserError(f"{where}: {name} is {text}; only geo_z may be NaN (no height)")
        if i >= 3 and value < 0:
            raise UserError(f"{where}: {name} {text} is negative; pixels count from the photo's top-left corner")
        values.append(value)
    return np.array(values[:3]), np.array(values[3:])


def read_gcp_list(path: Path) -> tuple[str, list[Gcp]]:
    """(the projection line, the GCPs in the order they first appear) of an OpenDroneMap ``gcp_list.txt``.

    A UserError in one line names the file and line for: a missing or empty file, a projection that cannot
    be read, a line with fewer than 6 fields, a number that does not parse or is not finite (geo_z may be NaN),
    a position off the Earth, the same GCP at two positions or marked twice on one photo at two pixels.
    """
    source = f"GCP list {path}"
    text = read_text(path, source, MAX_GCP_BYTES, "an OpenDroneMap gcp_list.txt")
    lines = [(n, s.strip()) for n, s in enumerate(text.lstrip("\ufeff").split("\n"), 1)]
    lines = [(n, s) for n, s in lines if s and not s.startswith("#")]
    if not lines:
        raise UserError(f"{source} is empty; its first line names the projection ({PROJECTIONS}), then one line "
                        "per GCP and photo: geo_x geo_y geo_z im_x im_y image_name [gcp_name]")
    (first, projection), rows = lines[0], lines[1:]
    kind = projection_kind(projection)
    if kind is None:
        raise UserError(f"{source} line {first}: {_short(projection)} is not a projection; the first line names "
                        f"the projection of the coordinates: {PROJECTIONS}")
    if not rows:
        raise UserError(f"{source} has a projection but no GCP lines (geo_x geo_y geo_z im_x im_y image_name "
                        "[gcp_name]), one per GCP and photo it is marked on")
    groups: dict[tuple, Gcp] = {}
    for n, row in rows:
        _add_row(groups, row.split(), kind[0], f"{source} line {n}", n)
    return projection, list(groups.values())  # "line N" has a space: no gcp_name is one


def _add_row(groups: dict[tuple, Gcp], fields: list[str], kind: str, where: str, n: int) -> None:
    """One line into the GCPs: keyed by name, or by position where the line names none."""
    if len(fields) < 6:
        raise UserError(f"{where}: {len(fields)} fields, expected geo_x geo_y geo_z im_x im_y image_name "
                        "[gcp_name] separated by tabs or spaces")
    geo, pixel = _numbers(fields, where)
    problem = geo_problem(kind, geo) if kind != "pyproj" else None
    if problem:
        raise UserError(f"{where}: {problem}")
    image, name = fields[5], fields[6] if len(fields) > 6 else ""
    key = ("name", name) if name else ("geo", tuple(None if np.isnan(v) else v for v in geo))
    accuracy = _accuracy(fields[7:9], where)
    gcp = groups.setdefault(key, Gcp(name or f"line {n}", geo, [], n, accuracy))
    if not np.array_equal(gcp.geo, geo, equal_nan=True):
        raise UserError(f"{where}: GCP {_short(name)} is at {fields[0]} {fields[1]} {fields[2]}, but at "
                        f"{' '.join(f'{v:.10g}' for v in gcp.geo)} on line {gcp.line}; give one position per name")
    if not np.array_equal(*(np.full(2, np.nan) if a is None else a for a in (gcp.accuracy, accuracy)), equal_nan=True):
        raise UserError(f"{where}: GCP {_short(gcp.name)} has another accuracy ({' '.join(fields[7:9]) or 'none'}) "
                        f"than on line {gcp.line}; give one per point")
    for other, seen in gcp.marks:
        if other == image and not np.array_equal(seen, pixel):
            raise UserError(f"{where}: GCP {_short(gcp.name)} is marked twice on {_short(image)}, at "
                            f"{seen[0]:g} {seen[1]:g} and {pixel[0]:g} {pixel[1]:g}; keep one")
    if not any(other == image for other, _ in gcp.marks):
        gcp.marks.append((image, pixel))


def _accuracy(extras: list[str], where: str) -> np.ndarray | None:
    """[2] horizontal and vertical accuracy, metres, when a line's two extras are numbers; None otherwise (extras
    that are words are the file's own). Numbers that cannot be an accuracy are refused in one line."""
    try:
        values = np.array([float(text) for text in extras]) if len(extras) == 2 else None
    except ValueError:
        return None
    if values is None:
        return None
    if not (np.isfinite(values).all() and (values >= ACCURACY_M[0]).all() and (values <= ACCURACY_M[1]).all()):
        raise UserError(f"{where}: extra1 extra2 ({' '.join(extras)}) are read as the point's horizontal and "
                        f"vertical accuracy, which must be {ACCURACY_M[0]:g} to {ACCURACY_M[1]:g} m; give them in "
                        "metres, or write another word in one of the two to keep them the file's own")
    return values


def write_gcp_list(path: Path, projection: str, rows) -> None:
    """Write a ``gcp_list.txt``: ``rows`` of ([3] geo, [2] pixel, image name, GCP name or None[, [2] accuracy,
    metres]), tab-separated, numbers written exactly (NaN as ``NaN``)."""
    def number(v) -> str:
        return "NaN" if np.isnan(v) else repr(float(v))

    lines = [projection]
    for geo, pixel, image, name, *accuracy in rows:
        if any(not t or len(t.split()) != 1 for t in (image, name or "-")):
            raise ValueError(f"image and GCP names must be single words, not {image!r}, {name!r}")
        if accuracy and accuracy[0] is not None and not name:
            raise ValueError("an accuracy is written after the GCP's name: give the point a name")
        extras = [*map(number, accuracy[0])] if accuracy and accuracy[0] is not None else []
        lines.append("\t".join([*map(number, geo), *map(number, pixel), image, *([name] if name else []), *extras]))
    atomic_write_text(path, "\n".join(lines) + "\n")


def to_wgs84(projection: str, geo: np.ndarray) -> np.ndarray:
    """[M, 3] positions in ``projection`` (a GCP list's first line) → [M, 3] latitude°, longitude°, height m.
    EPSG:4326 and WGS84 UTM are built in; anything else needs pyproj. NaN heights stay NaN."""
    geo = np.atleast_2d(np.asarray(geo, np.float64))
    kind = projection_kind(projection)
    if kind is None:
        raise UserError(f"{_short(projection)} is not a projection; give {PROJECTIONS}")
    if kind[0] != "pyproj":
        for i, row in enumerate(geo):
            problem = geo_problem(kind[0], row)
            if problem:
                raise UserError(f"GCP position {i + 1} in {projection.strip()}: {problem}")
    if kind[0] == "wgs84":
        return geo[:, [1, 0, 2]].copy()
    if kind[0] == "utm":
        return utm_to_wgs84(geo, kind[1], kind[2])
    return _pyproj(projection, geo)


def _pyproj(projection: str, geo: np.ndarray) -> np.ndarray:
    """[M, 3] through pyproj to WGS84 with ellipsoidal heights (EPSG:4979)."""
    try:
        import pyproj
    except ImportError:
        raise UserError(f"the GCP projection {_short(projection.strip())} needs pyproj: pip install "
                        "'momentum_gs[maps]' (or pip install pyproj), or give the GCPs in EPSG:4326 or WGS84 UTM "
                        "(WGS84 UTM 32N, EPSG:32632)") from None
    try:
        transformer = pyproj.Transformer.from_crs(pyproj.CRS.from_user_input(projection.strip()), "EPSG:4979",
                                                  always_xy=True)
        height = np.isfinite(geo[:, 2])
        lon, lat, h = transformer.transform(geo[:, 0], geo[:, 1], np.where(height, geo[:, 2], 0.0))
    except pyproj.exceptions.ProjError as exc:  # CRSError is one
        raise UserError(f"pyproj cannot read the GCP projection {_short(projection.strip())} "
                        f"({one_line(exc, 200)}); give {PROJECTIONS}") from None
    out = np.stack([lat, lon, np.where(height, h, np.nan)], 1).astype(np.float64)
    if not np.isfinite(out[:, :2]).all():
        raise UserError(f"pyproj cannot place every GCP of {_short(projection.strip())} on the Earth (are the "
                        "coordinates in that projection, x first?)")
    return out


def triangulate_with_reason(rays: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray | None, str]:
    """([3] point or None, why not) from observations (world_to_cam [3, 4], [2] normalized image x/z, y/z):
    the point nearest the rays (least squares), refined by Gauss-Newton on the reprojection error."""
    if len(rays) < 2:
        return None, f"seen in {len(rays)} registered photo{'' if len(rays) == 1 else 's'}, 2 or more needed"
    Rs = np.stack([np.asarray(P, np.float64)[:, :3] for P, _ in rays])
    ts = np.stack([np.asarray(P, np.float64)[:, 3] for P, _ in rays])
    obs = np.stack([np.asarray(x, np.float64) for _, x in rays])
    centres = -np.einsum("nji,nj->ni", Rs, ts)
    dirs = np.einsum("nji,nj->ni", Rs, np.c_[obs, np.ones(len(obs))])
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    widest = float(np.degrees(np.arccos(np.clip((dirs @ dirs.T).min(), -1.0, 1.0))))
    if widest < PARALLEL_DEG:
        return None, f"its rays are nearly parallel ({widest:.2f}° apart, {PARALLEL_DEG:g}° needed)"
    proj = np.eye(3)[None] - dirs[:, :, None] * dirs[:, None, :]  # [N, 3, 3] off-ray components
    x = np.linalg.lstsq(proj.sum(0), np.einsum("nij,nj->i", proj, centres), rcond=None)[0]
    for _ in range(10):
        cam = np.einsum("nij,j->ni", Rs, x) + ts
        if (cam[:, 2] <= 0).any():
            break
        z = cam[:, 2:3]
        r = (cam[:, :2] / z - obs).reshape(-1)
        d = np.stack([np.c_[1 / z, np.zeros_like(z), -cam[:, :1] / z ** 2],
                      np.c_[np.zeros_like(z), 1 / z, -cam[:, 1:2] / z ** 2]], 1)  # [N, 2, 3] d(x/z, y/z)/d(cam)
        J = np.einsum("nkj,nji->nki", d, Rs).reshape(-1, 3)
        step = np.linalg.lstsq(J, -r, rcond=None)[0]
        x = x + step
        if np.linalg.norm(step) < 1e-9 * (1 + np.linalg.norm(x)):
            break
    depth = np.einsum("nij,j->ni", Rs, x)[:, 2] + ts[:, 2]
    if not np.isfinite(x).all() or (depth <= 0).any():
        return None, f"it lies behind {int((~(depth > 0)).sum())} of the photos it is marked on (a wrong mark?)"
    return x, ""


def triangulate(rays: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray | None:
    """[3] the point seen by ``rays`` (world_to_cam [3, 4], [2] normalized undistorted x/z, y/z), least squares
    then Gauss-Newton on the reprojection error; None with fewer than 2 rays, rays within ``PARALLEL_DEG`` of
    each other, or the point behind a camera (:func:`triangulate_with_reason` says which)."""
    return triangulate_with_reason(rays)[0]


@dataclass
class GcpFit:
    """The similarity ``enu = scale * rotation @ x + translation`` fitted to the GCPs, and how well it fits."""

    scale: float
    rotation: np.ndarray  # [3, 3]
    translation: np.ndarray  # [3]
    residuals: dict[str, np.ndarray]  # GCP name → [3] enu - fit(model point), metres
    used: list[str]  # GCPs in the fit
    skipped: dict[str, str]  # GCP name → why it is not in the fit

    def apply(self, x: np.ndarray) -> np.ndarray:
        """[N, 3] model points → [N, 3] ENU metres."""
        return self.scale * np.asarray(x, np.float64) @ self.rotation.T + self.translation

    def matrix(self) -> np.ndarray:
        """[3, 4] ``[s R | t]``."""
        return np.c_[self.scale * self.rotation, self.translation]

    def rms(self) -> float:
        """RMS of the residuals' lengths (metres)."""
        return float(np.sqrt(np.mean([r @ r for r in self.residuals.values()])))


def _collinear(points: np.ndarray) -> bool:
    sv = np.linalg.svd(points - points.mean(0), compute_uv=False)
    return bool(sv[0] == 0 or sv[1] < COLLINEAR * sv[0])


def fit_gcps(model_points: dict[str, np.ndarray], enu: dict[str, np.ndarray],
             skipped: dict[str, str] | None = None) -> GcpFit:
    """The 3-D similarity (Umeyama) from the triangulated GCPs ``model_points`` (name → [3], model frame) to
    their ``enu`` positions (name → [3] metres). A GCP of ``enu`` without a model point is skipped for the
    reason in ``skipped`` (from :func:`triangulate_with_reason`); one without a height (NaN) is skipped. A
    UserError in one line when fewer than 3 remain or they lie on a line."""
    why = {}
    for name, p in enu.items():
        if name not in model_points or model_points[name] is None:
            why[name] = (skipped or {}).get(name, "not triangulated")
        elif not np.isfinite(model_points[name]).all():
            why[name] = "not triangulated"
        elif not np.isfinite(p[:2]).all():
            why[name] = "no position"
        elif not np.isfinite(p[2]):
            why[name] = "no height (NaN) in the GCP list"
    used = [name for name in enu if name not in why]
    reasons = "; ".join(f"{n}: {w}" for n, w in list(why.items())[:3]) + ("; ..." if len(why) > 3 else "")
    if len(used) < 3:
        raise UserError(f"{len(used)} of {len(enu)} ground control points can be used ({listing(used) or 'none'})"
                        f", 3 or more are needed" + (f" ({reasons})" if why else "") + "; mark every GCP on 2 or "
                        "more photos from different places, with its height")
    src = np.stack([model_points[n] for n in used]).astype(np.float64)
    dst = np.stack([enu[n] for n in used]).astype(np.float64)
    if _collinear(dst) or _collinear(src):
        raise UserError(f"the {len(used)} usable ground control points ({listing(used)}) lie on a line, which "
                        "leaves the rotation about it free; add GCPs off that line")
    s, R, t = similarity(src, dst)
    if not np.isfinite(s) or s <= 0:
        raise UserError(f"no similarity fits the ground control points ({listing(used)}); check their marks")
    fit = GcpFit(s, R, t, {}, used, why)
    fit.residuals = dict(zip(used, dst - fit.apply(src)))
    return fit
