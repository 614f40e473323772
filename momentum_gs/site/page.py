"""``SITE/index.html``: one page with the city on the globe, the pictures a person looks at, the numbers and a
link to every file of the site.

The map is CesiumJS drawing the site's 3D Tiles, offline (no ion token, no imagery, no terrain): the page loads
``Cesium/Cesium.js`` beside it, a copy of the npm package's browser build made here when it is found (the
``MGS_CESIUM`` folder, ``./node_modules/cesium/Build/Cesium``, or npm's global packages). Without it the page
shows the scene in the exported self-contained viewer (``export/scene.html``) and says how to get the globe.
Browsers do not let a page read files beside it from ``file://``: the page is served (``python -m http.server -d
SITE``), as the last line of ``mgs run`` says.
"""

from __future__ import annotations

import html
import json
import shutil
import subprocess
from pathlib import Path

from momentum_gs.config import environment
from momentum_gs.io.atomic import atomic_write_text
from momentum_gs.site.folder import Site

CESIUM_ENV = "MGS_CESIUM"
TILESET = "export/3dtiles/tileset.json"
MAP = """<div id="map"></div>
<script>window.CESIUM_BASE_URL = "Cesium/";</script>
<script src="Cesium/Cesium.js"></script><link rel="stylesheet" href="Cesium/Widgets/widgets.css">
<script>
  const widget = window.widget = new Cesium.CesiumWidget("map", { baseLayer: false, skyBox: false, skyAtmosphere: false });
  window.loaded = Cesium.Cesium3DTileset.fromUrl("%s").then((tileset) => {
    widget.scene.primitives.add(window.tileset = tileset);
    widget.camera.flyToBoundingSphere(tileset.boundingSphere, { duration: 0 });
  });
</script>"""
STYLE = """body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1100px; padding: 0 16px 40px }
#map, iframe { width: 100%; height: 560px; border: 0; background: #000 }
img { max-width: 100%; border: 1px solid #ccc } table { border-collapse: collapse }
td { padding: 2px 14px 2px 0; vertical-align: top } .note { color: #555 }"""


def find_cesium() -> Path | None:
    """CesiumJS's browser build (the folder holding ``Cesium.js``), or None (module notes)."""
    candidates = [Path(environment.text(CESIUM_ENV))] if environment.text(CESIUM_ENV) else []
    candidates.append(Path("node_modules") / "cesium" / "Build" / "Cesium")
    npm = shutil.which("npm")
    if npm:
        try:
            root = subprocess.run([npm, "root", "-g"], capture_output=True, text=True, timeout=60).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            root = ""
        if root:
            candidates.append(Path(root) / "cesium" / "Build" / "Cesium")
    return next((c for c in candidates if (c / "Cesium.js").is_file()), None)


def write_page(site: Site) -> list[str]:
    """Write ``SITE/index.html`` (and copy CesiumJS beside it when found); returns the lines to print."""
    lines = []
    has_tiles = (site.root / TILESET).is_file()
    cesium = find_cesium() if has_tiles else None
    if cesium is not None and not (site.root / "Cesium" / "Cesium.js").is_file():
        shutil.copytree(cesium, site.root / "Cesium", dirs_exist_ok=True)
        lines.append(f"CesiumJS copied from {cesium} into {site.root / 'Cesium'} (the page's map, offline)")
    elif cesium is None:
        lines.append("CesiumJS not found (npm install -g cesium@1.145.0, or MGS_CESIUM=its Build/Cesium folder): the "
                     "page shows the scene in its own viewer instead of on the globe")
    atomic_write_text(site.page, page_html(site, cesium is not None))
    lines.append(f"page: {site.page}; to look at it: python -m http.server -d {site.root} 8000, then open "
                 "http://localhost:8000/")
    return lines


def page_html(site: Site, globe: bool) -> str:
    """The page's HTML (module notes); ``globe``: CesiumJS lies beside it."""
    name = html.escape(site.root.resolve().name)
    if globe:
        view = MAP % TILESET
    elif (site.export / "scene.html").is_file():
        view = ('<iframe src="export/scene.html"></iframe><p class="note">The city on the globe needs CesiumJS '
                "beside this page: <code>npm install -g cesium@1.145.0</code>, then <code>mgs run ... --from page"
                "</code>.</p>")
    else:
        view = '<p class="note">No export to show yet.</p>'
    parts = [f"<!doctype html>\n<meta charset=\"utf-8\"><title>{name}</title>\n<style>{STYLE}</style>",
             f"<h1>{name}</h1>", view, "<h2>Numbers</h2>", _numbers(site), "<h2>Pictures</h2>", _pictures(site),
             "<h2>Files</h2>", _files(site)]
    return "\n".join(parts) + "\n"


def _read(path: Path) -> dict:
    """A JSON file of the site as a dictionary ({} when absent or not JSON)."""
    try:
        value = json.loads(path.read_text(errors="replace"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _numbers(site: Site) -> str:
    """A table of the site's numbers: the SfM's, the training's, the held-out scores, the stages' times."""
    rows = []
    sfm = _read(site.scene / "sfm.json")
    if sfm:
        rows.append(("photos registered", f"{sfm.get('images_registered', '?')} of {sfm.get('images_total', '?')}"))
        rows.append(("SfM points", sfm.get("points", "?")))
        if sfm.get("gps_residual_horizontal_rms_m") is not None:
            rows.append(("GPS residual (horizontal RMS)", f"{sfm['gps_residual_horizontal_rms_m']:.2f} m"))
    summary = _read(site.run / "summary.json")
    if summary:
        rows.append(("training", f"{summary.get('steps')} steps in {summary.get('seconds', 0):.0f} s, "
                                 f"{summary.get('num_anchors')} anchors, {summary.get('num_blocks', 1)} block(s)"))
    results = _read(site.run / "eval" / "results.json")
    if results.get("psnr") is not None:
        lpips = f", LPIPS {results['lpips']:.3f}" if results.get("lpips") is not None else ""
        rows.append(("held-out views", f"PSNR {results['psnr']:.2f} dB, SSIM {results['ssim']:.3f}{lpips} over "
                                       f"{results.get('num_test_views', '?')} photos the training never saw"))
    for stage, entry in site.record.get("stages", {}).items():
        rows.append((f"stage {stage}", f"{entry.get('seconds', 0):.0f} s"))
    cells = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f"<table>{cells}</table>"


def _pictures(site: Site) -> str:
    """The site's pictures with their captions."""
    pictures = [(site.scene / "cameras.png", "the photos' positions over the SfM points"),
                (site.run / "partition.png", "the blocks of the partition"),
                (site.run / "eval" / "strip.png", "held-out photos: render above, photo below"),
                (site.maps / "orthophoto.png", "the orthophoto (maps/orthophoto.tif; the surface model: maps/dsm.tif)")]
    return "\n".join(f'<figure><img src="{_relative(site, p)}"><figcaption>{html.escape(caption)}</figcaption>'
                     "</figure>" for p, caption in pictures if p.is_file())


def _files(site: Site) -> str:
    """A link to every file of the exports and the records."""
    files = sorted(p for p in site.export.rglob("*") if p.is_file() and "tiles" not in p.relative_to(site.export).parts
                   ) if site.export.is_dir() else []
    files += [p for p in (site.run / "eval" / "results.json", site.run / "config.yaml", site.run / "summary.json",
                          site.scene / "sfm.json", site.scene / "georef.json", site.record_path) if p.is_file()]
    files += sorted(p for p in site.maps.iterdir() if p.is_file() and not p.name.startswith(".")
                    ) if site.maps.is_dir() else []
    items = "".join(f'<li><a href="{_relative(site, p)}">{html.escape(_relative(site, p))}</a> '
                    f"({p.stat().st_size / 2**20:.1f} MB)</li>" for p in files)
    return f"<ul>{items}</ul>"


def _relative(site: Site, path: Path) -> str:
    return path.relative_to(site.root).as_posix()
