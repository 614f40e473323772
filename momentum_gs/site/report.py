"""``SITE/report.html``: how far off the site is, each figure with what it was measured against.

- the placement: how the scene was put on the Earth, and how well the photos' GPS agrees with it (the fit used
  the GPS, so this is agreement, not a check);
- the ground control points: their residuals after the adjustment, which was fitted to them (not a check either);
- the check points, which no fit ever saw: each point's east, north and up error, then RMSE, CE90 and LE90;
- the map: its pixel size and coverage, and the orthophoto with each point's horizontal error drawn as an arrow
  from its surveyed place, magnified (the scale is on the picture);
- the surface model's spread over the training photos (``dsm_spread.tif``), and its picture, and the share of its
  heights enough photos confirm (``dsm_support.tif``).

Made from the scene's ``sfm.json`` and the maps' ``maps.json``; a site without them gets a report that says so.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from momentum_gs.data.sfm.control import drawn_errors
from momentum_gs.data.sfm.run import REPORT_NAME as SFM_REPORT
from momentum_gs.data.utm import wgs84_to_utm
from momentum_gs.io.atomic import atomic_write_text
from momentum_gs.site.outputs import read_json
from momentum_gs.maps.despike import WINDOW as DESPIKE_WINDOW
from momentum_gs.maps.files import PREVIEW_NAME, SPREAD_FULL_PX, SPREAD_PREVIEW, SUMMARY_NAME, SUPPORT_PREVIEW
from momentum_gs.maps.guide import WINDOW as GUIDE_WINDOW
from momentum_gs.site.folder import Site

REPORT_PAGE = "report.html"
ARROW_SHARE = 0.08  # the largest error's arrow, as a share of the picture's width
COLOURS = {"check": "#ff2d55", "gcp": "#ffcc00"}
STYLE = """body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1100px; padding: 0 16px 40px }
table { border-collapse: collapse } td, th { padding: 2px 14px 2px 0; text-align: left; vertical-align: top }
.note { color: #555 } .map { position: relative } .map img { width: 100%; display: block; border: 1px solid #ccc }
.map svg { position: absolute; left: 0; top: 0; width: 100%; height: 100% }"""


def write_report(site: Site) -> Path:
    """Write ``SITE/report.html`` (module notes); returns its path."""
    sfm = read_json(site.scene / SFM_REPORT) or {}
    maps = read_json(site.maps / SUMMARY_NAME) or None
    picture, spread, support = (site.relative(site.maps / name) if (site.maps / name).is_file() else None
                                for name in (PREVIEW_NAME, SPREAD_PREVIEW, SUPPORT_PREVIEW))
    path = site.root / REPORT_PAGE
    atomic_write_text(path, report_html(site.root.resolve().name, sfm, maps, picture, spread, support))
    return path


def report_html(name: str, sfm: dict, maps: dict | None, picture: str | None, spread: str | None = None,
                support: str | None = None) -> str:
    """The report's HTML from the scene's ``sfm.json``, the maps' ``maps.json`` (None: no maps) and the paths of the
    orthophoto's preview, of the DSM's spread's and of the picture of the heights to measure on (None: none)."""
    geo = sfm.get("georeference") or {}
    adjustment, check = geo.get("adjustment") or {}, geo.get("check_points") or {}
    parts = [f"<!doctype html>\n<meta charset=\"utf-8\"><title>{html.escape(name)}: accuracy</title>\n"
             f"<style>{STYLE}</style>", f"<h1>{html.escape(name)}: accuracy</h1>",
             "<h2>Placement</h2>", _table(_placement(sfm, geo))]
    if adjustment.get("gcp_residuals_m"):
        parts += ["<h2>Ground control points</h2>",
                  '<p class="note">Their residuals after the adjustment, which was fitted to them: not an independent '
                  "check. Heights not given are not used (—).</p>",
                  _points(adjustment["gcp_residuals_m"], "surveyed − model")]
    parts.append("<h2>Check points</h2>")
    if check.get("count"):
        parts += [f'<p class="note">Measured against the surveyed positions of {check["count"]} check points that no '
                  "fit used: the model's position (triangulated from each point's marks) minus the survey, in east, "
                  "north, up metres at the site's origin. CE90 and LE90 assume normal errors (NSSDA: CE90 = 1.5175 × "
                  "RMSE<sub>r</sub>, LE90 = 1.6449 × RMSE<sub>z</sub>).</p>",
                  _points(check["points"], "model − surveyed"), _table(_accuracy(check))]
    else:
        parts.append('<p class="note">No check points: give them with <code>--check FILE</code> (the gcp_list.txt '
                     "format) to measure the site against points no fit used.</p>")
    parts += ["<h2>Map</h2>", _map(maps, picture, check, adjustment), _spread(maps, spread, support)]
    return "\n".join(parts) + "\n"


def _table(rows: list[tuple[str, str]]) -> str:
    return "<table>" + "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in rows) + \
        "</table>"


def _m(value) -> str:
    return "—" if value is None else f"{value:+.3f}"


def _placement(sfm: dict, geo: dict) -> list[tuple[str, str]]:
    """How the scene was placed and how well the GPS agrees (what each is measured against, said)."""
    if not sfm:
        return [("scene", "no sfm.json: the scene was not made by mgs sfm here")]
    rows = [("photos registered", f"{sfm.get('images_registered')} of {sfm.get('images_total')}")]
    taken_out = geo.get("photos_taken_out") or {}
    if taken_out:
        rows.append(("taken out as misregistered", ", ".join(f"{n} ({d:g} m from its GPS)" for n, d in
                                                             sorted(taken_out.items()))))
    if not sfm.get("georeferenced"):
        return rows + [("placed", "no: the scene is in COLMAP's frame (no usable GPS or ground control)")]
    rows.append(("placed on", "ground control points" if sfm.get("fit") == "gcp" else "the photos' GPS"))
    horizontal, vertical = sfm.get("gps_residual_horizontal_rms_m"), sfm.get("gps_residual_vertical_rms_m")
    if sfm.get("fit") != "gcp" and horizontal is not None:
        rows.append(("GPS agreement (the fit used it: not a check)", f"{horizontal:.2f} m RMS horizontally"
                     + (f", {vertical:.2f} m vertically" if vertical is not None else "")
                     + f", {geo.get('inliers', '?')} of {geo.get('images_used', '?')} fixes"))
    adjustment = geo.get("adjustment") or {}
    if adjustment:
        rows.append(("adjustment", f"cameras moved {adjustment.get('camera_moved_rms_m')} m RMS; tie points "
                     f"{adjustment.get('tie_rms_px_before')} → {adjustment.get('tie_rms_px_after')} px"
                     + (f"; GPS weighted as {adjustment['gps_std_m']} m" if adjustment.get("gps_std_m") else "")))
    return rows


def _points(points: dict, sense: str) -> str:
    """A table of named [east, north, up] errors (metres; up None where there is no height)."""
    head = "<tr><th>point</th><th>east m</th><th>north m</th><th>up m</th><th>horizontal m</th></tr>"
    rows = "".join(f"<tr><td>{html.escape(n)}</td><td>{_m(e[0])}</td><td>{_m(e[1])}</td><td>{_m(e[2])}</td>"
                   f"<td>{np.hypot(e[0], e[1]):.3f}</td></tr>" for n, e in points.items())
    return f'<table><caption class="note">{html.escape(sense)}</caption>{head}{rows}</table>'


def _accuracy(check: dict) -> list[tuple[str, str]]:
    rows = [("horizontal", f"RMSE {check['rmse_horizontal_m']:.3f} m, CE90 {check['ce90_m']:.3f} m "
             f"(mean error east {check['mean_east_m']:+.3f}, north {check['mean_north_m']:+.3f} m)")]
    if "rmse_vertical_m" in check:
        rows.append(("vertical", f"RMSE {check['rmse_vertical_m']:.3f} m, LE90 {check['le90_m']:.3f} m (mean "
                     f"{check['mean_up_m']:+.3f} m, over {check['vertical_count']} points with heights)"))
    return rows


def _map(maps: dict | None, picture: str | None, check: dict, adjustment: dict) -> str:
    """The map's figures, and its orthophoto with each point's error as an arrow."""
    if not maps:
        return '<p class="note">No maps yet (the maps stage makes them).</p>'
    text = (f'<p>Pixel {maps["gsd"]:.3g} m (the orthophoto and the surface model, {maps["width"]:,} × '
            f'{maps["height"]:,} pixels), {100 * maps.get("covered", 0):.0f} % of the grid covered; '
            f'{html.escape(str(maps.get("crs", "")))}.</p>')
    if picture is None:
        return text
    arrows, legend = _arrows(maps, check, adjustment)
    return text + (f'<div class="map"><img src="{html.escape(picture)}"><svg viewBox="0 0 {maps["width"]} '
                   f'{maps["height"]}">{arrows}</svg></div><p class="note">{legend}</p>')


def _window(maps: dict, key: str, default: int) -> int:
    """``maps.json``'s window side at ``key`` where it is a whole number, else ``default`` (the window the maps'
    code uses): nothing else of the file is written into the page."""
    window = maps.get(key)
    return window if isinstance(window, int) and not isinstance(window, bool) else default


def _spread(maps: dict | None, picture: str | None, support: str | None = None) -> str:
    """The surface model's spread over the photos (``maps.json``'s figures and its ``picture``), said to be measured
    against the photos' own depths, not the ground, then the heights enough photos confirm (:func:`_support`)."""
    if not maps or "spread_median" not in maps:
        return ""
    text = ("<h3>Surface model: how far it may be off</h3><p>The training photos' own depths put its heights "
            f'{maps["spread_median"]:.3g} m from it (the median of the spread), '
            f'{100 * maps["spread_within_pixel"]:.0f} % of them within a pixel'
            + (f', {100 * maps["spread_within_vouched"]:.0f} % within {SPREAD_FULL_PX:g} pixels'
               if "spread_within_vouched" in maps else "")
            + f'; {100 * maps["spread_measured"]:.0f} % '
            'of its heights are seen by two photos or more (dsm_spread.tif, per pixel).</p><p class="note">Measured '
            "against the photos, not the ground: it shows where the photos disagree (roof edges, trees, what was "
            "seen at a slant), not an error they share.</p>")
    if isinstance(maps.get("dsm_despiked"), (int, float)):
        window = _window(maps, "despike_window", DESPIKE_WINDOW)
        text += (f'<p class="note">{100 * maps["dsm_despiked"]:.1f} % of its heights stood more than 3 pixels off the '
                 f"median of the {window} × {window} pixels around them and took it (mgs ortho --despike).</p>")
    if isinstance(maps.get("dsm_guided"), (int, float)):
        window = _window(maps, "guide_window", GUIDE_WINDOW)
        text += (f'<p class="note">{100 * maps["dsm_guided"]:.1f} % then took the median of the {window} × {window} '
                 "pixels around them, weighted by the orthophoto's colours and the photos' agreement (mgs ortho "
                 "--no-guide).</p>")
    if picture is not None:
        text += (f'<div class="map"><img src="{html.escape(picture)}"></div><p class="note">Dark blue: no spread; '
                 f"dark red: {SPREAD_FULL_PX:g} pixels' worth or more; empty: fewer than two photos.</p>")
    return text + _support(maps, support)


def _support(maps: dict, picture: str | None) -> str:
    """The share of the surface model's heights that enough photos confirm (``maps.json``'s figures), said to be the
    ones to measure on, and their ``picture`` (None: none); nothing for maps made before the support."""
    if not (isinstance(maps.get("support_vouched"), (int, float)) and isinstance(maps.get("support_needed"), int)):
        return ""
    text = (f'<h3>Surface model: where to measure on it</h3><p>{100 * maps["support_vouched"]:.0f} % of its heights '
            f'are seen there by at least {maps["support_needed"]} photos (half the median count where two or more do, '
            "and never under 2): the heights to measure on (dsm_support.tif, photos per pixel). Fewer photos confirm "
            "ground deep between tall buildings and walls seen from one side, where the surface model is most often "
            "wrong.</p>")
    if picture is None:
        return text
    return text + (f'<div class="map"><img src="{html.escape(picture)}"></div><p class="note">Grey: the heights to '
                   f'measure on; red: fewer than {maps["support_needed"]} photos see them there.</p>')


def _arrows(maps: dict, check: dict, adjustment: dict) -> tuple[str, str]:
    """(SVG arrows in the grid's pixels, the legend) of the check points' and GCPs' horizontal errors, each drawn
    from its surveyed place (UTM per point), magnified alike."""
    epsg, (x0, y0), gsd = maps.get("epsg"), maps["top_left"], maps["gsd"]
    drawn = drawn_errors({"check_points": check, "adjustment": adjustment})
    if epsg is None or not drawn:
        return "", "No point to draw: the map has no CRS, or no check point or GCP was measured."
    zone, south = int(epsg) % 100, int(epsg) // 100 == 327
    longest = max(float(np.hypot(*d)) for *_, d in drawn) or 1.0
    per_metre = ARROW_SHARE * maps["width"] / longest  # grid pixels a metre of error
    svg = []
    for kind, name, lla, error in drawn:
        e, n = wgs84_to_utm(np.array([[lla[0], lla[1], 0.0]]), zone, south)[0, :2]
        px, py = (e - x0) / gsd, (y0 - n) / gsd
        qx, qy = px + error[0] * per_metre, py - error[1] * per_metre
        colour, width = COLOURS[kind], max(2.0, maps["width"] / 400)
        svg.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="{2 * width:.1f}" fill="none" stroke="{colour}" '
                   f'stroke-width="{width:.1f}"><title>{html.escape(name)}</title></circle>'
                   f'<line x1="{px:.1f}" y1="{py:.1f}" x2="{qx:.1f}" y2="{qy:.1f}" stroke="{colour}" '
                   f'stroke-width="{width:.1f}"/><circle cx="{qx:.1f}" cy="{qy:.1f}" r="{width:.1f}" '
                   f'fill="{colour}"/>')
    scale = longest * 100
    legend = (f"Arrows from each point's surveyed place to where the model puts it, magnified: an arrow "
              f"{ARROW_SHARE:.0%} of the picture's width is {scale:.1f} cm. Red: check points; yellow: ground control "
              "points (after the adjustment).")
    return "".join(svg), legend

