"""CesiumJS (npm ``cesium`` 1.145.0) in headless Chromium, driving the example page examples/cesium/index.html:
open a tileset, look from one of our cameras placed by the tileset's root transform, wait until what it
selected is drawn, and read what it drew. Offline: Cesium's Build/Cesium folder and the tilesets are served
from 127.0.0.1, no base imagery, no terrain, no Cesium ion token."""

from __future__ import annotations

import importlib.util
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from momentum_gs.config import RenderConfig
from momentum_gs.export.tiles.tileset import enu_to_ecef_matrix
from tests.helpers.browser import CHROMIUM, Browser, serve_folder
from tests.helpers.tools import npm_global_root

EXAMPLE = Path(__file__).parents[2] / "examples" / "cesium" / "index.html"
# After the page's load: hide the globe and the credits (our render has neither), then the test's handles.
SETUP = """
widget.scene.globe.show = false;
document.querySelector(".cesium-widget-credits").style.display = "none";
window.failures = [];
tileset.tileFailed.addEventListener((e) => window.failures.push(String(e.message)));
window.visible = new Set();
tileset.tileVisible.addEventListener((tile) => window.visible.add(tile.content.url.split("?")[0]));
window.view = (position, direction, up, fov, sse) => {
  tileset.maximumScreenSpaceError = sse;
  widget.camera.frustum.fov = fov;  // the horizontal angle: the canvas is wider than high
  widget.camera.setView({destination: Cesium.Cartesian3.fromArray(position),
                         orientation: {direction: Cesium.Cartesian3.fromArray(direction),
                                       up: Cesium.Cartesian3.fromArray(up)}});
};
// what the last frame drew, once the tileset has had nothing to load and the splat renderer has drawn what it
// selected (its sorting runs in a worker, some frames behind) for `frames` frames in a row, or after 120 s (beside
// a busy test worker the software renderer took over 40 s); `settled`: whether it got there; `tiles`: the content
// addresses of the tiles the last frame showed
window.settle = (frames) => new Promise((done) => {
  let calm = 0;
  const start = performance.now();
  const off = widget.scene.postRender.addEventListener(() => {
    const s = tileset.statistics, splats = tileset.gaussianSplatPrimitive ? tileset.gaussianSplatPrimitive._numSplats : -1;
    calm = tileset.tilesLoaded && splats === s.numberOfPointsSelected ? calm + 1 : 0;
    const tiles = [...window.visible];
    window.visible = new Set();
    if (calm < frames && performance.now() - start < 120000) return;
    off();
    done({selected: s.selected, points: s.numberOfPointsSelected, ready: s.numberOfTilesWithContentReady,
          splats: splats, settled: calm >= frames, failures: window.failures, tiles: tiles});
  });
});
"""


def cesium_build() -> Path:
    """Cesium's Build/Cesium folder of the npm package installed globally (.ci/run installs it); skips the
    calling test (in one line) without it, Chromium or websocket-client."""
    if CHROMIUM is None or importlib.util.find_spec("websocket") is None:
        pytest.skip("needs Chromium (apt-get install chromium) and websocket-client (pip install -e .[test])")
    root = npm_global_root() if shutil.which("node") else None
    build = root / "cesium" / "Build" / "Cesium" if root else None
    if build is None or not (build / "Cesium.js").is_file():
        pytest.skip("needs Node.js and the npm package cesium (npm install -g cesium@1.145.0; .ci/run installs it)")
    return build


class CesiumPage:
    """A Chromium tab on the example page, served with Cesium and the ``tilesets`` ({name: folder}) under
    ``site``; ``size`` is the canvas (width, height)."""

    def __init__(self, site: Path, tilesets: dict[str, Path], size: tuple[int, int]):
        site.mkdir(parents=True, exist_ok=True)
        shutil.copy(EXAMPLE, site / "index.html")
        (site / "Cesium").symlink_to(cesium_build(), target_is_directory=True)
        for name, folder in tilesets.items():
            (site / name).symlink_to(folder, target_is_directory=True)
        self.server = serve_folder(site)
        self.browser = Browser(site / "profile", *size)
        self.origin: list[float] = [0.0, 0.0, 0.0]

    def close(self) -> None:
        self.browser.close()
        self.server.shutdown()

    def run(self, expression: str, wait_s: float = 60.0):
        """The value of ``expression`` in the page, promises awaited (up to ``wait_s`` seconds); a failure in the
        page fails the test."""
        answer = self.browser.call("Runtime.evaluate", wait_s, expression=expression, awaitPromise=True,
                                   returnByValue=True)
        assert "exceptionDetails" not in answer, answer["exceptionDetails"]
        return answer["result"].get("value")

    def open(self, name: str, origin: dict) -> None:
        """Load the example page afresh on the tileset ``name`` placed at ``origin`` (georef.json's) and wait for
        it (a rejected load fails the test)."""
        self.origin = [origin["lat"], origin["lon"], origin["alt"]]
        self.run("window.stale = true")
        self.browser.open(f"http://127.0.0.1:{self.server.server_port}/index.html?tileset={name}/tileset.json")
        deadline = time.time() + 30
        while self.run("window.stale !== undefined || typeof window.loaded !== 'object'"):
            assert time.time() < deadline, "the example page did not start loading its tileset"
            time.sleep(0.05)
        self.run("window.loaded")
        self.run(SETUP + "true")

    def view(self, camera_to_world: np.ndarray, fov: float, sse: float) -> dict:
        """Look from an ENU pose ([4, 4], OpenCV axes: x right, y down, z forward) placed by the tileset's root
        transform, and return what the tileset drew once settled."""
        to_ecef = np.array(enu_to_ecef_matrix(self.origin)).reshape(4, 4).T
        pose = to_ecef @ camera_to_world
        args = [pose[:3, 3], pose[:3, 2], -pose[:3, 1]]
        self.run(f"window.view({', '.join(json.dumps(a.tolist()) for a in args)}, {fov}, {sse})")
        return self.run("window.settle(3)", wait_s=150.0)

    def root_box(self) -> tuple[np.ndarray, np.ndarray]:
        """(centre, half axes as columns) of the tileset's root bounding box in Earth-centred coordinates."""
        box = self.run("(() => { const b = tileset.root.boundingVolume.boundingVolume; "
                       "return [Cesium.Cartesian3.pack(b.center, []), Cesium.Matrix3.toArray(b.halfAxes)]; })()")
        return np.array(box[0]), np.array(box[1]).reshape(3, 3).T  # Cesium's matrices: column-major

    def offsite_requests(self) -> list[str]:
        return [r for r in self.browser.requests
                if not r.startswith(("http://127.0.0.1:", "blob:http://127.0.0.1:", "data:"))]


def inside_box(points: np.ndarray, box: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Which of the [N, 3] points lie inside an oriented box (centre, half axes as columns)."""
    centre, half_axes = box
    return np.abs(np.linalg.solve(half_axes, (points - centre).T)).max(0) <= 1


def camera_pose(camera) -> np.ndarray:
    """[4, 4] float64 camera-to-world of one of our cameras (OpenCV axes), as :meth:`CesiumPage.view` takes it."""
    return torch.linalg.inv(camera.world_to_cam).double().numpy()


def horizontal_fov(camera) -> float:
    """The camera's horizontal field of view in radians (CesiumJS's on a canvas wider than high)."""
    return 2 * np.arctan(camera.width / 2 / float(camera.K[0, 0]))


def render_on_black(gaussians, camera, size: tuple[int, int]) -> np.ndarray:
    """[H, W, 3] our render of ``gaussians`` from ``camera`` scaled to ``size``, on CesiumJS's black (globe hidden)."""
    with torch.no_grad():
        return gaussians.render(camera.scaled(*size), RenderConfig(background=(0.0, 0.0, 0.0))).clamp(0, 1).numpy()


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])
