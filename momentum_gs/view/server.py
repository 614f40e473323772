"""The viser server of ``mgs view`` and ``mgs train --viewer``: the scene rendered by our renderer from each
browser's camera (a small frame while the camera moves, the full canvas once it rests), the training cameras as
frustums (a click flies there), the partition's cells as boxes in the colours of ``partition.png``, a switch per
block, and a render mode (RGB, depth, normals).

Frames are rendered by one thread, one browser after another; nothing here runs in the trainer's thread but
:meth:`~momentum_gs.view.sources.TrainingSource.step_done`. A frame that fails is reported on one line and the
viewer goes on; a browser that goes away mid-frame is forgotten.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import random
import signal
import socket
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from momentum_gs.errors import UserError, one_line
from momentum_gs.partition.frame import estimate_up
from momentum_gs.ranges import PORT
from momentum_gs.view.drawer import FrameDrawer
from momentum_gs.view.frames import (MODES, FrameSettings, block_rgb, camera_pose, cell_boxes, frame_size,
                                     viewer_camera)

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
ANY_HOST = ("0.0.0.0", "::")
PREVIEW_PIXELS = 160 * 120  # the frame while the camera moves: interactive on a CPU
SETTLE_S = 0.2  # the camera rests this long before the full frame is rendered
REFRESH_S = 1.0  # while training, a resting camera's frame is redrawn at most this often


def check_port(host: str, port: int) -> None:
    """A UserError when ``port`` cannot be bound on ``host`` (viser would quietly take the next free one), or
    when ``host`` is empty (it would listen everywhere and print an address no browser opens)."""
    if not host.strip():
        raise UserError("--host is empty; give the address to listen on: 127.0.0.1 (this machine, the default) "
                        "or 0.0.0.0 (every interface)")
    if not PORT.holds(port):
        raise UserError(f"--port {port}: give a port between 1 and 65535")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # as the server binds: connections of a viewer that just stopped (TIME_WAIT) do not block the port,
        # a program listening on it does
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UserError(f"port {port} on {host} is in use (another viewer?); pass --port with a free one")
            raise UserError(f"cannot serve the viewer on {host}:{port} ({exc.strerror or exc}); check --host")


def warn_if_open(host: str) -> None:
    """One warning line when the viewer listens beyond this machine."""
    if host not in LOCAL_HOSTS:
        print(f"warning: the viewer listens on {host}: anyone who can reach this machine can see the scene "
              "(the default, 127.0.0.1, keeps it to this machine)", file=sys.stderr, flush=True)


def import_viser():
    """The viser module, or a UserError saying how to install it."""
    try:
        import viser
    except ImportError:
        raise UserError("the viewer needs the viser package: pip install 'momentum_gs[view]'") from None
    return viser


def own_random_for_pings() -> None:
    """Give the websockets library its own random generator: it draws the payload of every keep-alive ping from
    Python's global one, which training seeds and saves in its checkpoints (the viewer must not move it)."""
    from websockets.asyncio import connection

    if not isinstance(connection.random, random.Random):
        connection.random = random.Random()


def quiet_handshake_errors() -> None:
    """No traceback on the console for a client that is not a browser (a bare TCP connect, a port scanner):
    the websockets server logs a failed opening handshake with its whole stack at ERROR."""
    logging.getLogger("websockets.server").setLevel(logging.CRITICAL)


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


class Viewer:
    """A viser server showing ``source`` (:mod:`momentum_gs.view.sources`) at http://host:port.

    Args:
        source: what to render; drawer: how (:class:`~momentum_gs.view.drawer.FrameDrawer`; default every block whole).
        host, port: where to listen (127.0.0.1: this machine only). log: where the one-line reports go.
        started: ``time.perf_counter()`` when the command started, to report the time to the first frame.
    """

    def __init__(self, source, host: str = "127.0.0.1", port: int = 8080, started: float | None = None,
                 log=None, drawer: FrameDrawer | None = None):
        check_port(host, port)
        viser = import_viser()
        self.source, self.log = source, log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.drawer = drawer or FrameDrawer(source)
        self.started = time.perf_counter() if started is None else started
        state = random.getstate()  # rich, imported by viser's server, draws from Python's stream on import
        with contextlib.redirect_stdout(io.StringIO()):  # viser's own banner: our line names the address
            self.server = viser.ViserServer(host=host, port=port, verbose=False)
        own_random_for_pings()
        quiet_handshake_errors()
        # a frame for a browser that left while it was rendered is dropped: nothing to warn about
        warnings.filterwarnings("ignore", message=r"Queued a \w+ on a closed connection", category=UserWarning)
        self.host, self.port = host, self.server.get_port()
        self.clients: dict[int, ClientState] = {}
        self.settings = 0  # bumped by every control change: a new frame for everyone
        self.last_frame: Frame | None = None
        self.first_frame_s: float | None = None
        self.frames = 0
        self._errors: set[str] = set()
        self._stop = threading.Event()
        self._build_gui()
        self._build_scene()
        self.server.on_client_connect(self._connect)
        self.server.on_client_disconnect(lambda client: self.clients.pop(client.client_id, None))
        random.setstate(state)
        self._thread = threading.Thread(target=self._loop, name="mgs-viewer", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """The address to open in a browser: for a viewer on every interface (0.0.0.0, ::), this machine's
        name, which other machines can open too."""
        host = socket.gethostname() if self.host in ANY_HOST else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    # ---- controls and scene ------------------------------------------------------------------------------
    def _build_gui(self) -> None:
        """The panel: status, render mode, resolution, what to show, a switch per block (and pause)."""
        gui = self.server.gui
        gui.configure_theme(show_share_button=False, control_width="medium")  # sharing would go online
        self.status = gui.add_markdown(self.source.status())
        self.frame_text = gui.add_markdown("no frame yet")
        self.mode = gui.add_dropdown("Render", MODES, initial_value="rgb")
        self.resolution = gui.add_slider("Resolution", min=0.1, max=1.0, step=0.05, initial_value=1.0)
        background = np.clip(np.asarray(self.source.cfg.render.background, np.float64) * 255, 0, 255).round()
        self.background = gui.add_rgb("Background", initial_value=tuple(int(c) for c in background))
        with gui.add_folder("Depth range", expand_by_default=False):  # 0, 0: each frame's 2nd-98th percentile
            self.near = gui.add_number("Near", initial_value=0.0, min=0.0, step=0.01)
            self.far = gui.add_number("Far", initial_value=0.0, min=0.0, step=0.01)
        self.show_cameras = gui.add_checkbox("Cameras", initial_value=True)
        self.show_cells = gui.add_checkbox("Cells", initial_value=self.source.partition is not None)
        for handle in (self.mode, self.resolution, self.background, self.near, self.far):
            handle.on_update(lambda _: self._changed())
        self.show_cameras.on_update(lambda _: self._set_visible(self.frustums, self.show_cameras.value))
        self.show_cells.on_update(lambda _: self._set_visible(self.boxes, self.show_cells.value))
        self.block_boxes = []
        with gui.add_folder("Blocks"):
            for b in range(self.source.num_blocks):
                box = gui.add_checkbox(f"block {b}", initial_value=True)
                box.on_update(lambda _: self._changed())
                self.block_boxes.append(box)
            gui.add_button("All blocks").on_click(lambda _: self._all_blocks())
        self.pause = None
        if hasattr(self.source, "paused"):
            self.pause = gui.add_button("Pause")
            self.pause.on_click(lambda _: self._toggle_pause())

    def _build_scene(self) -> None:
        """Frustums of the training cameras (coloured by block) and boxes of the partition's cells."""
        scene, cameras, partition = self.server.scene, self.source.cameras, self.source.partition
        up = partition.up if partition is not None and partition.up is not None else estimate_up(cameras, False)
        if up is not None:
            scene.set_up_direction(tuple(float(v) for v in up))
        colours = block_rgb(max(self.source.num_blocks, 1))
        centres = np.stack([camera_pose(c)[0] for c in cameras]) if cameras else np.zeros((1, 3))
        extent = float(np.linalg.norm(centres - centres.mean(0), axis=1).max()) or 1.0
        self.frustums = []
        for i, camera in enumerate(cameras):
            position, wxyz, fov, aspect = camera_pose(camera)
            block = int(partition.camera_block[i]) if partition is not None and partition.camera_block is not None \
                else 0
            frustum = scene.add_camera_frustum(f"/cameras/{i}", fov=fov, aspect=aspect, scale=0.04 * extent,
                                               color=tuple(int(c) for c in colours[block]), wxyz=wxyz,
                                               position=position)
            frustum.on_click(lambda event, camera=camera: self.fly_to(event.client, camera))
            self.frustums.append(frustum)
        self.boxes = []
        if partition is not None:
            for b, (centre, size, wxyz) in enumerate(cell_boxes(partition)):
                colour = tuple(int(c) for c in colours[b])
                self.boxes.append(scene.add_box(f"/cells/{b}", color=colour, dimensions=size, wireframe=True,
                                                wxyz=wxyz, position=centre))
                self.boxes.append(scene.add_label(f"/cells/{b}/label", f"block {b}", position=(0.0, 0.0, 0.0)))

    def _set_visible(self, handles, visible: bool) -> None:
        for handle in handles:
            handle.visible = visible

    def _changed(self) -> None:
        self.settings += 1

    def _all_blocks(self) -> None:
        for box in self.block_boxes:
            box.value = True
        self._changed()

    def _toggle_pause(self) -> None:
        paused = self.source.paused
        if paused.is_set():
            paused.clear()
            self.pause.label = "Pause"
        else:
            paused.set()
            self.pause.label = "Resume"

    @property
    def frame_settings(self) -> FrameSettings:
        """The panel's render mode, background and depth range."""
        near, far = float(self.near.value), float(self.far.value)
        return FrameSettings(self.mode.value, tuple(c / 255 for c in self.background.value),
                             near if far > near else None, far if far > near else None)

    @property
    def overlays_shown(self) -> bool:
        """Whether frustums or cells are drawn over the frames (each frame's depth is then rendered and sent)."""
        return bool(self.show_cameras.value or (self.show_cells.value and self.boxes))

    @property
    def blocks(self) -> tuple[int, ...]:
        """The blocks switched on."""
        return tuple(b for b, box in enumerate(self.block_boxes) if box.value)

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
            if time.perf_counter() - status_at > 0.5:
                status_at = time.perf_counter()
                try:
                    with self.source.lock:
                        text = self.source.status()
                    self.status.content = text
                except Exception as exc:
                    self._report(f"viewer: the status failed ({one_line(exc, 200)})")
            if not busy:
                self._stop.wait(0.02)

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
        view = self._browser_view(client, state)  # (position, wxyz, fov, width, height)
        needed = None if view is None else self._frame_needed(state, *view)  # (size, full)
        if needed is None:
            return False
        position, wxyz, fov, _, _ = view
        self._send_frame(client_id, client, state, position, wxyz, fov, *needed)
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
        full = key == state.camera_key  # else the camera (or a control) moved: the small frame now
        if not full:
            state.camera_key, state.changed_at, state.full = key, now, False
            return frame_size(width, height, PREVIEW_PIXELS), full
        if (not state.full and now - state.changed_at >= SETTLE_S) or (
                state.full and version != state.version and now - state.sent_at >= REFRESH_S):
            return frame_size(width, height, int(width * height * self.resolution.value ** 2)), full
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
            state.full, state.version = True, version
            self.frames += 1
            self.last_frame = Frame(client_id, camera, settings.mode, blocks, version, seconds, self.frames)
            self.frame_text.content = (f"{size[0]}×{size[1]} frame in {seconds * 1000:.0f} ms, "
                                       f"{gaussians} Gaussians" + (f"; {self.drawer.text}" if self.drawer.text else ""))
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


def serve_until_interrupted(viewer: Viewer, line: str) -> None:
    """Print ``line``, then serve until Ctrl-C or SIGTERM (a service manager's stop), close the viewer and say
    so."""
    def interrupt(signum, frame) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        print(line, flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        viewer.close()
        print("viewer stopped", flush=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
