"""The viser server of ``mgs view`` and ``mgs train --viewer``: the scene rendered by our renderer from each
browser's camera (a small frame while the camera moves, the full canvas once it rests), the training cameras as
frustums (a click flies there), the partition's cells as boxes in the colours of ``partition.png``, a switch per
block, and a render mode (RGB, depth, normals).

Frames are rendered by one thread, one browser after another; nothing here runs in the trainer's thread but
:meth:`~momentum_gs.view.sources.TrainingSource.step_done`. A frame that fails is reported on one line and the
viewer goes on; a browser that goes away mid-frame is forgotten. The panel is :mod:`momentum_gs.view.panel`'s,
the frustums and cells :mod:`momentum_gs.view.overlays`', the port check and the wait for Ctrl-C
:mod:`momentum_gs.view.serving`'s.
"""

from __future__ import annotations

import contextlib
import io
import random
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from momentum_gs.errors import one_line
from momentum_gs.view.drawer import FrameDrawer
from momentum_gs.view.frames import camera_pose, frame_size, viewer_camera
from momentum_gs.view.overlays import add_overlays
from momentum_gs.view.panel import ViewerPanel
from momentum_gs.view.serving import (browser_url, check_port, import_viser, own_random_for_pings,
                                      quiet_handshake_errors)

PREVIEW_PIXELS = 160 * 120  # the frame while the camera moves: interactive on a CPU
SETTLE_S = 0.2  # the camera rests this long before the full frame is rendered
REFRESH_S = 1.0  # while training, a resting camera's frame is redrawn at most this often
STATUS_EVERY_S = 0.5  # how often the panel's status line is read from the source


@dataclass
class ClientState:
    """What one browser was last sent."""

    camera_key: tuple | None = None
    arrived: bool = False  # its camera has been set to the first training camera
    changed_at: float = 0.0
    full: bool = False  # the last frame was the full one for camera_key
    version: int = -1  # the model version of the last full frame
    sent_at: float = 0.0


@dataclass
class Frame:
    """The last full frame sent to a browser (read by tests and the benchmark)."""

    client_id: int
    camera: object  # our Camera
    mode: str
    blocks: tuple[int, ...]
    version: int
    seconds: float
    count: int = field(default=0)


class Viewer(ViewerPanel):
    """A viser server showing ``source`` (:mod:`momentum_gs.view.sources`) at http://host:port.

    Args:
        source: what to render.
        host, port: where to listen (127.0.0.1: this machine only).
        started: ``time.perf_counter()`` when the command started, to report the time to the first frame.
        log: where the one-line reports go (default: standard error).
        drawer: how to render (:class:`~momentum_gs.view.drawer.FrameDrawer`; default every block whole).
    """

    def __init__(self, source, host: str = "127.0.0.1", port: int = 8080, started: float | None = None,
                 log=None, drawer: FrameDrawer | None = None):
        check_port(host, port)
        viser = import_viser()
        self.source = source
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.drawer = drawer or FrameDrawer(source)
        self.started = time.perf_counter() if started is None else started
        state = random.getstate()  # rich, imported by viser's server, draws from Python's stream on import
        with contextlib.redirect_stdout(io.StringIO()):  # viser's own banner: our line names the address
            self.server = viser.ViserServer(host=host, port=port, verbose=False)
        own_random_for_pings()
        quiet_handshake_errors()
        # a frame for a browser that left while it was rendered is dropped: nothing to warn about
        warnings.filterwarnings("ignore", message=r"Queued a \w+ on a closed connection", category=UserWarning)
        self.host = host
        self.port = self.server.get_port()
        self.clients: dict[int, ClientState] = {}
        self.settings = 0
        self.last_frame: Frame | None = None
        self.first_frame_s: float | None = None
        self.frames = 0
        self._errors: set[str] = set()
        self._stop = threading.Event()
        self._build_gui()
        self.frustums, self.boxes = add_overlays(self.server.scene, self.source, self.fly_to)
        self.server.on_client_connect(self._connect)
        self.server.on_client_disconnect(lambda client: self.clients.pop(client.client_id, None))
        random.setstate(state)
        self._thread = threading.Thread(target=self._loop, name="mgs-viewer", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """The address to open in a browser (this machine's name for a viewer on every interface)."""
        return browser_url(self.host, self.port)

    def fly_to(self, client, camera) -> None:
        """Put ``client``'s camera where training camera ``camera`` is, with its field of view."""
        position, wxyz, fov, _ = camera_pose(camera)
        with client.atomic():
            client.camera.wxyz = wxyz
            client.camera.position = position
            client.camera.fov = fov

    def _connect(self, client) -> None:
        self.clients[client.client_id] = ClientState()

    # ---- frames ------------------------------------------------------------------------------------------
    def _loop(self) -> None:
        """Serve every browser in turn until :meth:`close`; an error is reported once and never stops it."""
        status_at = 0.0
        while not self._stop.is_set():
            busy = False
            for client_id in list(self.clients):
                try:
                    busy |= self._serve(client_id)
                except Exception as exc:  # a frame that failed, a browser gone mid-frame: report, go on
                    if client_id not in self.server.get_clients():
                        self.clients.pop(client_id, None)
                    self._report(f"viewer: a frame failed ({one_line(exc, 200)})")
            if time.perf_counter() - status_at > STATUS_EVERY_S:
                status_at = time.perf_counter()
                self._show_status()
            if not busy:
                self._stop.wait(0.02)

    def _show_status(self) -> None:
        """The source's status line into the panel; a failure is reported once."""
        try:
            with self.source.lock:
                text = self.source.status()
            self.status.content = text
        except Exception as exc:
            self._report(f"viewer: the status failed ({one_line(exc, 200)})")

    def _report(self, line: str) -> None:
        if line not in self._errors:
            self._errors.add(line)
            self.log(line)

    def _serve(self, client_id: int) -> bool:
        """Send ``client_id`` the frame it needs now, if any; True if one was rendered."""
        client = self.server.get_clients().get(client_id)
        state = self.clients.get(client_id)
        if client is None or state is None:
            self.clients.pop(client_id, None)
            return False
        view = self._browser_view(client, state)
        if view is None:
            return False
        needed = self._frame_needed(state, *view)
        if needed is None:
            return False
        position, wxyz, fov, _, _ = view
        size, full = needed
        self._send_frame(client_id, client, state, position, wxyz, fov, size, full)
        return True

    def _browser_view(self, client, state: ClientState) -> tuple | None:
        """(position, wxyz, fov, width, height) of the browser's camera, or None while there is nothing to draw:
        its camera not sent yet, a new browser just flown to the first training camera, an empty canvas."""
        cam = client.camera
        try:
            position, wxyz, fov = cam.position.copy(), cam.wxyz.copy(), float(cam.fov)
            width, height = int(cam.image_width), int(cam.image_height)
        except AssertionError:  # the browser has not sent its camera yet
            return None
        if not state.arrived:  # a new browser starts at the first training camera
            state.arrived = True
            if self.source.cameras:
                self.fly_to(client, self.source.cameras[0])
                return None
        if width < 1 or height < 1:
            return None
        return position, wxyz, fov, width, height

    def _frame_needed(self, state: ClientState, position, wxyz, fov: float, width: int, height: int
                      ) -> tuple[tuple[int, int], bool] | None:
        """(frame size, whether it is the full frame) of the frame the browser needs now, or None: the small
        frame as soon as the camera (or a control) moves, the full one once it rests, again when the model changed."""
        key = (tuple(np.round(position, 6)), tuple(np.round(wxyz, 6)), round(fov, 6), width, height, self.settings)
        now = time.perf_counter()
        version = self.source.version
        if key != state.camera_key:  # the camera (or a control) moved: the small frame now
            state.camera_key = key
            state.changed_at = now
            state.full = False
            return frame_size(width, height, PREVIEW_PIXELS), False
        settled = not state.full and now - state.changed_at >= SETTLE_S
        stale = state.full and version != state.version and now - state.sent_at >= REFRESH_S
        if settled or stale:
            return frame_size(width, height, int(width * height * self.resolution.value ** 2)), True
        return None

    def _send_frame(self, client_id: int, client, state: ClientState, position, wxyz, fov: float,
                    size: tuple[int, int], full: bool) -> None:
        """Render the frame of ``size`` and send it; a full frame is counted and reported."""
        camera = viewer_camera(position, wxyz, fov, *size).to(self.source.device)
        settings, blocks = self.frame_settings, self.blocks
        started = time.perf_counter()
        with self.source.lock:
            version = self.source.version
            image, gaussians, depth = self.drawer.render(blocks, camera, settings, self.overlays_shown, full)
        seconds = time.perf_counter() - started
        # with the depth, the browser hides frustums and cells where the scene is in front of them (viser keeps
        # depths up to 167.77 scene units: farther overlays are drawn over the scene)
        client.scene.set_background_image(image, format="png" if full else "jpeg", jpeg_quality=85, depth=depth)
        state.sent_at = time.perf_counter()
        if full:
            state.full = True
            state.version = version
            self.frames += 1
            self.last_frame = Frame(client_id, camera, settings.mode, blocks, version, seconds, self.frames)
            text = f"{size[0]}×{size[1]} frame in {seconds * 1000:.0f} ms, {gaussians} Gaussians"
            if self.drawer.text:
                text += f"; {self.drawer.text}"
            self.frame_text.content = text
            if self.first_frame_s is None:
                self.first_frame_s = state.sent_at - self.started
                self.log(f"viewer: first frame {self.first_frame_s:.1f} s after the start")

    def close(self) -> None:
        """Stop rendering and serving."""
        self._stop.set()
        self._thread.join(timeout=10)
        self.drawer.close()
        with contextlib.redirect_stdout(io.StringIO()):
            self.server.stop()
