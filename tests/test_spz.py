"""The ``.spz`` file: its bytes against the format, round trips within its quantisation, its frame, bad input,
and (where installed) Niantic's own library and PlayCanvas's splat-transform reading and writing it."""

from __future__ import annotations

import gzip
import math
import shutil
import struct
import subprocess

import numpy as np
import pytest
import torch

from momentum_gs.config import RenderConfig
from momentum_gs.data.camera import Camera
from momentum_gs.errors import UserError
from momentum_gs.export.spz import flip_frame, load_spz, read_payload, save_spz, unpack
from momentum_gs.export.standard_ply import load_standard_ply, save_standard_ply
from momentum_gs.losses import psnr
from momentum_gs.model.standard import StandardGaussians
from tests.helpers.tiny_training import train_tiny


def _gaussians(n: int, degree: int, seed: int = 0, extent: float = 5.0) -> StandardGaussians:
    """Random Gaussians inside the ranges the format holds (SH beyond DC in ±0.9, log-scales in [−7, 0])."""
    g = torch.Generator().manual_seed(seed)
    sh = torch.rand(n, (degree + 1) ** 2, 3, generator=g) * 1.8 - 0.9
    sh[:, 0] = torch.rand(n, 3, generator=g) * 4 - 2
    return StandardGaussians(means=(torch.rand(n, 3, generator=g) * 2 - 1) * extent,
                             quats=torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=-1),
                             scales=torch.exp(torch.rand(n, 3, generator=g) * 7 - 7),
                             opacities=torch.rand(n, generator=g), sh=sh)


def _within(error: torch.Tensor, bound: float) -> None:
    """Every error within ``bound`` (float32 slack), and the largest above half of it: the bound is tight."""
    worst = float(error.abs().max())
    assert bound / 2 < worst <= bound * (1 + 1e-5) + 1e-6, (worst, bound)


def _header(path) -> tuple:
    return struct.unpack("<IIIBBBB", gzip.decompress(path.read_bytes())[:16])


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_a_round_trip_stays_within_the_quantisation_steps(tmp_path, degree):
    n = 400
    g = _gaussians(n, degree, seed=degree)
    for version, sh_bits in ((3, (8, 8)), (2, (5, 4))):
        path = save_spz(g, tmp_path / f"v{version}.spz", version=version, sh_bits=sh_bits)
        back = load_spz(path)
        assert _header(path)[4] == 12  # fractional bits
        _within(back.means - g.means, 2.0**-13)
        _within(back.scales.log() - g.scales.log(), 1 / 32)  # (log s + 10) · 16 in a byte
        _within(back.opacities - g.opacities, 0.5 / 255)
        _within(back.sh[:, 0] - g.sh[:, 0], 0.5 / (255 * 0.15))
        # round(128 c) + 128, kept to steps of 2^(8 − bits): at most half a step and half a unit off
        step1, step2 = (2 ** (8 - bits) for bits in sh_bits)
        if degree >= 1:
            _within(back.sh[:, 1:4] - g.sh[:, 1:4], (step1 // 2 + 0.5) / 128)
        if degree >= 2:
            _within(back.sh[:, 4:] - g.sh[:, 4:], (step2 // 2 + 0.5) / 128)
        stored, quats = unpack(read_payload(path)).quats, flip_frame(g).quats  # before load_spz normalises
        if version == 3:  # the largest component made positive, the other three in steps of √½ / 511
            largest = quats.abs().argmax(1, keepdim=True)
            sign = lambda q: torch.sign(q.gather(1, largest))  # noqa: E731
            _within((stored * sign(stored) - quats * sign(quats)).scatter(1, largest, 0.0), 0.5 * math.sqrt(0.5) / 511)
        else:  # w made ≥ 0, x, y, z in steps of 1 / 127.5, w derived
            sign = lambda q: torch.where(q[:, :1] < 0, -1.0, 1.0)  # noqa: E731
            _within((stored * sign(stored) - quats * sign(quats))[:, 1:], 0.5 / 127.5)
        assert (back.quats * g.quats).sum(-1).abs().min() > (0.99999 if version == 3 else 0.99)


def test_one_gaussian_has_the_bytes_the_format_gives(tmp_path):
    """Worked by hand from the format: the frame turned half a turn about x, each array in its layout."""
    g = StandardGaussians(means=torch.tensor([[1.5, -2.25, 0.0]]),
                          quats=torch.tensor([[math.cos(math.pi / 6), 0.0, math.sin(math.pi / 6), 0.0]]),
                          scales=torch.ones(1, 3), opacities=torch.tensor([0.5]), sh=torch.zeros(1, 4, 3))
    g.sh[0, 1, 0] = 0.25  # red's coefficient of −C1·y: odd in y, so negated in the file
    path = save_spz(g, tmp_path / "one.spz")
    data = path.read_bytes()
    assert data[:2] == b"\x1f\x8b"  # one gzip stream
    payload = gzip.decompress(data)
    # magic "NGSP", version 3, 1 point, SH degree 1, 12 fractional bits, flags 0, reserved 0
    assert payload[:16] == b"NGSP" + (3).to_bytes(4, "little") + (1).to_bytes(4, "little") + bytes([1, 12, 0, 0])
    expected = bytes.fromhex(
        "001800" "002400" "000000"  # x = 1.5 · 2^12, y = +2.25 · 2^12 (up, not down), z = 0; 24 bits little-endian
        "80"  # alpha round(0.5 · 255)
        "808080"  # colour round(0 · 0.15 · 255 + 127.5)
        "a0a0a0"  # scale (log 1 + 10) · 16 = 160
        "00a40dc0"  # 60° about y, y negated: w largest (index 3, top bits), y = −0.5: sign | round(0.5/√½·511)
        "608080" "808080" "808080")  # SH: −0.25 → 96; coefficient-major, channel inner
    assert payload[16:] == expected


def test_the_fractional_bits_follow_the_scene_size(tmp_path):
    g = _gaussians(4, 0)
    for far, bits in ((3000.0, 11), (2047.0, 12)):  # 2^11 ≤ 3000 < 2^12: 23 − 12 bits
        g.means = g.means.clamp(-0.4, 0.4)
        g.means[0, 1] = far
        path = save_spz(g, tmp_path / "s.spz")
        assert _header(path)[4] == bits
        assert (load_spz(path).means - g.means).abs().max() <= 2.0 ** -(bits + 1)
    g.means[0, 0] = 2.0**23
    with pytest.raises(UserError, match="beyond the ±8.4 million"):
        save_spz(g, tmp_path / "far.spz")


def test_the_file_stores_right_up_back_axes_and_renders_like_our_frame(tmp_path):
    """The file's own values are ours with y and z negated, and seen by a camera turned with them they render the
    same image: positions, rotations and every SH coefficient's sign changed consistently."""
    g = _scene(seed=4)
    path = save_spz(g, tmp_path / "scene.spz")
    ours, stored = load_spz(path), unpack(read_payload(path))
    torch.testing.assert_close(stored.means, ours.means * torch.tensor([1.0, -1.0, -1.0]), atol=1e-6, rtol=0)
    camera = _camera()
    turned = Camera(name="turned", width=camera.width, height=camera.height, K=camera.K,
                    world_to_cam=camera.world_to_cam @ torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0])))
    cfg = RenderConfig(backend="builtin")
    with torch.no_grad():
        image = ours.render(camera, cfg)
        torch.testing.assert_close(stored.render(turned, cfg), image, atol=1e-4, rtol=0)
        unsigned = StandardGaussians(stored.means, stored.quats, stored.scales, stored.opacities, ours.sh)
        assert (unsigned.render(turned, cfg) - image).abs().max() > 0.05  # SH left unsigned would show
    torch.testing.assert_close(flip_frame(flip_frame(g)).sh, g.sh)


def test_the_round_tripped_scene_renders_like_the_original(tmp_path):
    """Measured 47.1 dB, most of the error the scales' 1/16 steps in log (47.3 dB with only them quantised);
    36.7 dB with the spz library's coarse SH steps; the same Gaussians without SH beyond DC score 19.1 dB."""
    g = _scene(seed=5)
    cfg = RenderConfig(backend="builtin")
    with torch.no_grad():
        image = g.render(_camera(), cfg)
        assert image.std() > 0.1  # the Gaussians fill the view
        for sh_bits, floor in (((8, 8), 45), ((5, 4), 34)):
            back = load_spz(save_spz(g, tmp_path / "scene.spz", sh_bits=sh_bits))
            assert float(psnr(back.render(_camera(), cfg), image)) > floor, sh_bits


def test_the_file_is_several_times_smaller_than_the_ply(tmp_path):
    """65 bytes per Gaussian of SH degree 3 before gzip against the PLY's 248 (random values barely compress:
    measured 62.6 bytes; 46.3 with the spz library's 5 and 4 SH bits)."""
    n, g = 2000, _gaussians(2000, 3)
    ply = save_standard_ply(g, tmp_path / "scene.ply").stat().st_size
    spz = save_spz(g, tmp_path / "scene.spz").stat().st_size
    compact = save_spz(g, tmp_path / "compact.spz", sh_bits=(5, 4)).stat().st_size
    assert ply > 248 * n and spz < 64 * n and compact < 48 * n, (ply, spz, compact)


def test_bad_input_is_a_one_line_user_error(tmp_path):
    good = gzip.decompress(save_spz(_gaussians(10, 1), tmp_path / "good.spz").read_bytes())

    def spz(name: str, payload: bytes, compress: bool = True):
        (tmp_path / name).write_bytes(gzip.compress(payload) if compress else payload)
        return tmp_path / name

    cases = [(tmp_path / "missing.spz", "not found"),
             (spz("ply.spz", b"ply\nformat binary_little_endian 1.0\n", compress=False), "gzip stream is damaged"),
             (spz("cut.spz", (tmp_path / "good.spz").read_bytes()[:-4], compress=False), "damaged or truncated"),
             (spz("short.spz", good[:10]), "10 bytes where the .spz header needs 16"),
             (spz("magic.spz", b"SPLT" + good[4:]), "not a .spz file: its header starts"),
             (spz("v1.spz", good[:4] + struct.pack("<I", 1) + good[8:]), "version 1; this reader reads versions 2"),
             (spz("v4.spz", b"NGSP" + struct.pack("<I", 4) + bytes(24), compress=False), "version 4 \\(zstd"),
             (spz("sh4.spz", good[:12] + bytes([4]) + good[13:]), "SH degree 4"),
             (spz("flags.spz", good[:14] + bytes([2]) + good[15:]), "flags 0x2"),
             (spz("body.spz", good[:-1]), "announces 10 Gaussians")]
    for path, message in cases:
        with pytest.raises(UserError, match=message) as caught:
            load_spz(path)
        assert "\n" not in str(caught.value), path
    with pytest.raises(UserError, match="choose 2 or 3"):
        save_spz(_gaussians(2, 0), tmp_path / "v5.spz", version=5)


def test_niantics_library_reads_our_file_and_we_read_its(tmp_path):
    """Niantic's spz library (its C++ code through the alspz bindings), which hands back the file's own frame:
    reading ours gives our values with y and z turned; reading its files gives back what it was given."""
    alspz = pytest.importorskip("alspz")
    g = _gaussians(300, 3, seed=7)
    turned = flip_frame(g)
    for version in (3, 2):
        theirs = alspz.load_spz(save_spz(g, tmp_path / f"ours{version}.spz", version=version).read_bytes())
        assert theirs["sh_degree"] == 3 and theirs["num_points"] == 300
        assert np.abs(theirs["positions"] - turned.means.numpy()).max() <= 2.0**-13  # 12 fractional bits
        assert np.abs(theirs["colors"] - g.sh[:, 0].numpy()).max() <= 0.5 / (255 * 0.15) + 1e-5
        assert np.abs(theirs["sh"] - turned.sh[:, 1:].reshape(300, -1).numpy()).max() <= 0.5 / 128 + 1e-5
        assert np.abs(theirs["scales"] - g.scales.log().numpy()).max() <= 1 / 32 + 1e-5
        assert np.abs(1 / (1 + np.exp(-theirs["alphas"])) - g.opacities.numpy()).max() <= 0.5 / 255 + 1e-5
        quats = torch.from_numpy(theirs["rotations"][:, [3, 0, 1, 2]])
        assert (quats * turned.quats).sum(-1).abs().min() > (0.99999 if version == 3 else 0.99)
        data = alspz.save_spz(turned.means.numpy(), g.scales.log().numpy(), turned.quats[:, [1, 2, 3, 0]].numpy(),
                              torch.logit(g.opacities).numpy(), g.sh[:, 0].numpy(),
                              turned.sh[:, 1:].reshape(300, -1).numpy(), 3, version=version)
        (tmp_path / "theirs.spz").write_bytes(data)
        back = load_spz(tmp_path / "theirs.spz")
        assert _header(tmp_path / "theirs.spz")[:2] == (0x5053474E, version)
        assert (back.means - g.means).abs().max() <= 2.0**-13  # their 12 fractional bits
        assert (back.sh - g.sh).abs().max() <= 9 / 128  # their 5 and 4 bits, rounded their own way
        assert (back.opacities - g.opacities).abs().max() <= 0.5 / 255 + 1e-5
        assert (back.quats * g.quats).sum(-1).abs().min() > (0.9999 if version == 3 else 0.99)


def test_playcanvas_splat_transform_converts_our_file_to_our_ply_frame_and_back(tmp_path):
    """A viewer's converter reads our .spz into a PLY in our frame (not turned), and writes a version-3 .spz
    of our PLY that we read back into the same Gaussians."""
    tool = shutil.which("splat-transform")
    if tool is None:
        pytest.skip("splat-transform is not on PATH")
    from plyfile import PlyData

    g = _gaussians(300, 3, seed=8)
    save_spz(g, tmp_path / "ours.spz")
    subprocess.run([tool, "-q", "-w", str(tmp_path / "ours.spz"), str(tmp_path / "theirs.ply")], check=True,
                   capture_output=True)
    vertex = PlyData.read(str(tmp_path / "theirs.ply"))["vertex"]
    column = lambda names: torch.tensor(np.stack([vertex[c] for c in names], 1))  # noqa: E731
    assert (column(["x", "y", "z"]) - g.means).abs().max() <= 2.0**-13 + 1e-6
    rest = column([f"f_rest_{i}" for i in range(45)]).reshape(-1, 3, 15).transpose(1, 2)
    assert (rest - g.sh[:, 1:]).abs().max() <= 0.5 / 128 + 1e-5
    quats = torch.nn.functional.normalize(column([f"rot_{i}" for i in range(4)]), dim=-1)
    assert (quats * g.quats).sum(-1).abs().min() > 0.99999
    theirs = load_standard_ply(tmp_path / "theirs.ply")  # our reader takes their PLY (it has no normals)
    assert (theirs.means - g.means).abs().max() <= 2.0**-13 + 1e-6 and theirs.sh.shape == g.sh.shape
    save_standard_ply(g, tmp_path / "ours.ply")
    subprocess.run([tool, "-q", "-w", "--spz-version", "3", str(tmp_path / "ours.ply"), str(tmp_path / "theirs.spz")],
                   check=True, capture_output=True)
    back = load_spz(tmp_path / "theirs.spz")
    assert (back.means - g.means).abs().max() <= 2.0**-13 and (back.sh - g.sh).abs().max() <= 9 / 128
    assert (back.quats * g.quats).sum(-1).abs().min() > 0.9999


def _scene(seed: int) -> StandardGaussians:
    """Gaussians 3–6 units in front of :func:`_camera`, with strongly view-dependent colour."""
    g = _gaussians(300, 3, seed=seed, extent=1.0)
    g.means = g.means * torch.tensor([1.5, 1.2, 1.5]) + torch.tensor([0.0, 0.0, 4.5])
    g.scales = g.scales.clamp(0.03, 0.3)
    g.sh[:, 1:] *= 0.6
    return g


def _camera() -> Camera:
    K = torch.tensor([[40.0, 0.0, 16.0], [0.0, 40.0, 12.0], [0.0, 0.0, 1.0]])
    return Camera(name="view", width=32, height=24, K=K, world_to_cam=torch.eye(4))


@pytest.mark.slow
def test_export_as_spz_from_the_command_line(tiny_scene, tmp_path):
    import sys

    run = train_tiny(tiny_scene, tmp_path / "run")
    result = subprocess.run([sys.executable, "-m", "momentum_gs.cli", "export", str(run), "--format", "spz",
                             "--sh-degree", "1", "--refine", "0"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    path = run / "export" / "scene.spz"
    assert f"to {path}" in result.stdout and "SH degree 1" in result.stdout
    g = load_spz(path)
    assert g.degree == 1 and len(g) > 0 and _header(path)[:4] == (0x5053474E, 3, len(g), 1)
