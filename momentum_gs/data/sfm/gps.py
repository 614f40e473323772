"""The photos' GPS positions, read from their EXIF with piexif and checked value by value.

COLMAP's own reader takes any latitude reference other than ``S`` as north and any longitude reference other
than ``W`` as east, accepts a longitude of 451°, and reports a position it cannot parse as no position. Here
every photo's GPS is either a (latitude°, longitude°, altitude m) triple that means something, or a reason
it is not used; the altitude alone may be missing (NaN) while the horizontal position is kept.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from momentum_gs.errors import listing

_REFS = {"lat": {"N": 1.0, "S": -1.0}, "lon": {"E": 1.0, "W": -1.0}}
_LIMITS = {"lat": 90.0, "lon": 180.0}


class GpsProblem(ValueError):
    """A photo's GPS tags that cannot be used, with the reason."""


def _number(value, what: str) -> float:
    """One EXIF rational (numerator, denominator) or number as a float."""
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        num, den = value
        if den == 0:
            raise GpsProblem(f"{what} is a fraction with a zero denominator ({num}/0)")
        return num / den
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise GpsProblem(f"{what} is not a number ({value!r})")


def _degrees(tags: dict, key: str, value_tag: int, ref_tag: int) -> float:
    """Signed degrees from degrees/minutes/seconds (one to three rationals) and the N/S or E/W reference."""
    name = "latitude" if key == "lat" else "longitude"
    raw_ref = tags.get(ref_tag)
    ref = raw_ref.decode("latin-1", "replace") if isinstance(raw_ref, bytes) else str(raw_ref or "")
    ref = ref.strip("\x00 ").upper()
    if ref not in _REFS[key]:
        allowed = " or ".join(_REFS[key])
        shown = repr(ref) if ref else "missing"
        raise GpsProblem(f"{name} reference {shown} is not {allowed}")
    parts = tags[value_tag]
    if isinstance(parts, tuple) and len(parts) == 2 and all(isinstance(v, int) for v in parts):
        parts = (parts,)  # one rational: decimal degrees
    if not isinstance(parts, tuple) or not 1 <= len(parts) <= 3:
        raise GpsProblem(f"{name} is not 1 to 3 rationals ({parts!r})")
    values = [_number(p, name) for p in parts]
    degrees = sum(v / 60 ** i for i, v in enumerate(values))
    if not math.isfinite(degrees) or any(v < 0 for v in values):
        raise GpsProblem(f"{name} {degrees:g} is not a valid angle")
    if degrees > _LIMITS[key]:
        raise GpsProblem(f"{name} {degrees:g}° is outside ±{_LIMITS[key]:g}°")
    return _REFS[key][ref] * degrees


def photo_gps(path: Path) -> np.ndarray | None:
    """[3] (latitude°, longitude°, altitude m; NaN when the photo has no usable altitude) from a photo's EXIF,
    or None when it has no GPS position. Raises :class:`GpsProblem` for GPS tags that cannot be used."""
    import piexif

    try:
        gps = piexif.load(str(path)).get("GPS", {})
    except Exception:  # PNG, TIFF without EXIF, EXIF piexif cannot parse: no position to read
        return None
    tag = piexif.GPSIFD
    if tag.GPSLatitude not in gps and tag.GPSLongitude not in gps:
        return None
    if tag.GPSLatitude not in gps or tag.GPSLongitude not in gps:
        raise GpsProblem("only one of latitude and longitude is tagged")
    lat = _degrees(gps, "lat", tag.GPSLatitude, tag.GPSLatitudeRef)
    lon = _degrees(gps, "lon", tag.GPSLongitude, tag.GPSLongitudeRef)
    alt = math.nan
    if tag.GPSAltitude in gps:
        try:
            alt = _number(gps[tag.GPSAltitude], "altitude")
        except GpsProblem:
            alt = math.nan  # the horizontal position stays usable; the altitude is reported missing
        below = gps.get(tag.GPSAltitudeRef, 0)
        alt = -alt if below in (1, b"\x01") else alt
        alt = alt if math.isfinite(alt) and abs(alt) < 1e5 else math.nan
    return np.array([lat, lon, alt], np.float64)


def read_gps(photos: dict[str, Path]) -> tuple[dict[str, np.ndarray], list[str], dict[str, list[str]]]:
    """(name → [3] lat, lon, alt for the photos with a usable position, lines naming the photos whose GPS tags
    were found but cannot be used, grouped by reason, and those photos by reason)."""
    found: dict[str, np.ndarray] = {}
    problems: dict[str, list[str]] = {}
    for name, path in photos.items():
        try:
            lla = photo_gps(path)
        except GpsProblem as exc:
            problems.setdefault(str(exc), []).append(name)
            continue
        if lla is not None:
            found[name] = lla
    lines = [f"GPS not used in {len(names)} photo(s): {reason} ({listing(sorted(names), 5)})"
             for reason, names in sorted(problems.items())]
    return found, lines, problems
