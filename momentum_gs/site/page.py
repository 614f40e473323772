"""``SITE/index.html``: one page with the city on the globe, the pictures a person looks at, the numbers and a
link to every file of the site.

The page is made from what the stages recorded (:mod:`momentum_gs.site.outputs`), not from file names of its own.
The map is CesiumJS drawing the site's 3D Tiles over the site's own orthophoto, laid at the height of its low ground
(the surface model's 5th percentile, in the tiles' datum) in the orthophoto's WGS84 bounds, offline (no ion token,
no other imagery, no terrain): the page loads
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
from momentum_gs.site.outputs import outputs
from momentum_gs.site.report import REPORT_PAGE, write_report

CESIUM_ENV = "MGS_CESIUM"
MAP = """<div id="map"></div>
<script>window.CESIUM_BASE_URL = "Cesium/";</script>
<script src="Cesium/Cesium.js"></script><link rel="stylesheet" href="Cesium/Widgets/widgets.css">
<script>
  const widget = window.widget = new Cesium.CesiumWidget("map", { baseLayer: false, skyBox: false, skyAtmosphere: false });
  const ground = %s;
  if (ground) {  // the site's own orthophoto, laid at its low ground's height (the tiles' datum) under the city
    widget.scene.primitives.add(new Cesium.Primitive({
      geometryInstances: new Cesium.GeometryInstance({ geometry: new Cesium.RectangleGeometry({
        rectangle: Cesium.Rectangle.fromDegrees(...ground.west_south_east_north), height: ground.height,
        vertexFormat: Cesium.EllipsoidSurfaceAppearance.VERTEX_FORMAT }) }),
      appearance: new Cesium.EllipsoidSurfaceAppearance({ aboveGround: true, translucent: false,
        material: new Cesium.Material({ fabric: { uniforms: { image: ground.picture }, source: `
          czm_material czm_getMaterial(czm_materialInput materialInput) {
            czm_material material = czm_getDefaultMaterial(materialInput);
            vec4 colour = texture(image, materialInput.st);
            if (colour.a < 0.5) discard;  // no photo saw it: the globe shows through
            material.diffuse = colour.rgb;
            return material;
          }` } }) }) }));
  }
  window.loaded = Cesium.Cesium3DTileset.fromUrl(%s).then((tileset) => {
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
    """Write ``SITE/index.html`` from what the stages recorded (and copy CesiumJS beside it when found); returns the
    lines to print."""
    lines = []
    made = recorded(site)
    cesium = find_cesium() if made.get("tileset") else None
    if cesium is not None and not (site.root / "Cesium" / "Cesium.js").is_file():
        shutil.copytree(cesium, site.root / "Cesium", dirs_exist_ok=True)
        lines.append(f"CesiumJS copied from {cesium} into {site.root / 'Cesium'} (the page's map, offline)")
    elif cesium is None:
        lines.append("CesiumJS not found (npm install -g cesium@1.145.0, or MGS_CESIUM=its Build/Cesium folder): the "
                     "page shows the scene in its own viewer instead of on the globe")
    atomic_write_text(site.page, page_html(site, cesium is not None, made))
    lines.append(f"accuracy report: {write_report(site)}")
    lines.append(f"page: {site.page}; to look at it: python -m http.server -d {site.root} 8000, then open "
                 "http://localhost:8000/")
    return lines


def recorded(site: Site) -> dict:
    """What the finished stages recorded (:mod:`momentum_gs.site.outputs`), gathered in stage order: ``numbers``,
    ``pictures`` and ``files`` appended, the other keys (``tileset``, ``viewer``, ``ground``) the last one's;
    and each stage's seconds among the numbers."""
    made = {"numbers": [], "pictures": [], "files": []}
    for stage, entry in site.record.get("stages", {}).items():
        found = entry.get("outputs") if isinstance(entry.get("outputs"), dict) else outputs(stage, site)  # an older site
        for key, value in found.items():
            if key in ("numbers", "pictures", "files"):
                made[key] += value
            elif value is not None:
                made[key] = value
    made["numbers"] += [[f"stage {stage}", f"{entry.get('seconds', 0):.0f} s"]
                        for stage, entry in site.record.get("stages", {}).items()]
    made["files"].append(site.relative(site.record_path))
    return made


def page_html(site: Site, globe: bool, made: dict | None = None) -> str:
    """The page's HTML (module notes); ``globe``: CesiumJS lies beside it; ``made``: :func:`recorded` (None: read
    here)."""
    name = html.escape(site.root.resolve().name)
    made = recorded(site) if made is None else made
    if globe and made.get("tileset"):
        view = MAP % (json.dumps(made.get("ground")), json.dumps(made["tileset"]))
    elif made.get("viewer"):
        view = (f'<iframe src="{html.escape(made["viewer"])}"></iframe><p class="note">The city on the globe needs '
                "CesiumJS beside this page: <code>npm install -g cesium@1.145.0</code>, then <code>mgs run ... --from "
                "page</code>.</p>")
    else:
        view = '<p class="note">No export to show yet.</p>'
    rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>" for k, v in made["numbers"])
    pictures = "\n".join(f'<figure><img src="{html.escape(path)}"><figcaption>{html.escape(caption)}</figcaption>'
                         "</figure>" for path, caption in made["pictures"])
    files = "".join(f'<li><a href="{html.escape(path)}">{html.escape(path)}</a> ({_megabytes(site.root / path)})</li>'
                    for path in made["files"])
    parts = [f"<!doctype html>\n<meta charset=\"utf-8\"><title>{name}</title>\n<style>{STYLE}</style>",
             f"<h1>{name}</h1>", view, "<h2>Numbers</h2>", f"<table>{rows}</table>",
             f'<p><a href="{REPORT_PAGE}">The accuracy report</a>: the placement, the ground control and check '
             "points, each measured against what it says.</p>", "<h2>Pictures</h2>", pictures,
             "<h2>Files</h2>", f"<ul>{files}</ul>"]
    return "\n".join(parts) + "\n"


def _megabytes(path: Path) -> str:
    return f"{path.stat().st_size / 2**20:.1f} MB" if path.is_file() else "gone"
