"""The drawing kit, and the three pictures drawn with it: a partition map, ``cameras.png`` and a table plot."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from momentum_gs.data.sfm.report import CAMERA_RED, POINT_GREY, SIZE, draw_cameras
from momentum_gs.draw import (BLACK, TAB10, blank, distinct_colors, dot, map_window, put_pixels, put_text,
                              round_number, save_png, ticks, wrap_text)
from momentum_gs.eval.table import PLOT_BOX, gather, plot_psnr_vs_steps
from momentum_gs.partition import auto_partition, draw_partition
from tests.helpers.run_folders import make_run
from tests.helpers.survey import lawnmower_scene

WHITE = np.array([255, 255, 255])


def test_map_window_puts_its_edges_on_the_span_and_keeps_y_up():
    window = map_window(np.array([[0.0, 0.0], [10.0, 5.0]]), np.zeros((0, 2)), 99)
    assert window.side == pytest.approx(11.0) and window.pixels_per_unit == pytest.approx(9.0)
    corners = window.pixels(window.corner + np.array([[0.0, 0.0], [window.side, window.side]]))
    assert corners.tolist() == [[0, 99], [99, 0]]  # lower left → bottom-left pixel, upper right → top right
    assert window.pixels([[5.0, 2.5]]).tolist() == [[50, 50]]  # centred on what it shows
    empty = map_window(np.zeros((0, 2)), np.zeros((0, 2)), 10)
    assert empty.corner.tolist() == pytest.approx([-0.05, -0.05]) and empty.side == pytest.approx(1.1)


def test_round_numbers_ticks_and_colours():
    assert [round_number(v) for v in (0.37, 1.0, 4.99, 730.0)] == pytest.approx([0.2, 1.0, 2.0, 500.0])
    assert [round_number(v, up=True) for v in (0.37, 1.0, 4.99, 730.0)] == pytest.approx([0.5, 1.0, 5.0, 1000.0])
    values, digits = ticks(-0.03, 0.61)
    assert values.tolist() == pytest.approx([0.0, 0.2, 0.4, 0.6]) and digits == 1
    colors = distinct_colors(8)
    assert colors.shape == (8, 3) and colors.dtype == np.uint8 and len({tuple(c) for c in colors}) == 8


def test_text_dots_pixels_and_saving(tmp_path):
    image = blank(200, 60)
    assert image.shape == (60, 200, 3) and (image == 255).all()
    put_text(image, "RIGHT", 190, 30, align="right")  # no descender: all ink above the baseline
    ink = np.nonzero((image != 255).any(2))
    assert ink[1].max() <= 190 and ink[1].min() > 100 and ink[0].max() <= 31
    put_text(image, "ok", 20, 50, 0.7, outline=4)
    assert (image[30:60, 10:60] == 0).all(2).any() and (image[30:60, 10:60] == 255).all(2).any()
    dot(image, (100, 45), 5, (0, 0, 200), rim=BLACK)
    assert image[45, 100].tolist() == [0, 0, 200] and image[45, 105].max() < 100
    put_pixels(image, np.array([[1, 1], [-1, 3], [200, 3], [3, 60]]), (7, 8, 9))  # three fall outside
    assert image[1, 1].tolist() == [7, 8, 9] and (image == (7, 8, 9)).all(2).sum() == 1
    assert wrap_text(["aaaa", "bbbb", "cccc"], 90, 0.45) == ["aaaa; bbbb", "cccc"]
    save_png(tmp_path / "sub" / "p.png", image)
    assert (cv2.imread(str(tmp_path / "sub" / "p.png")) == image).all()
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["p.png"]  # no temporary file left


def test_partition_map_cells_box_and_legend(tmp_path):
    survey = lawnmower_scene()
    p = auto_partition(survey, 4)
    draw_partition(p, survey, tmp_path / "map.png", size=400)
    image = cv2.imread(str(tmp_path / "map.png"))
    assert image.shape[1] == 400 and image.shape[0] > 400
    colors = distinct_colors(4).astype(int)
    for corner in ((5, 5), (5, 394), (394, 5), (394, 394)):  # each corner lies in one cell, tinted by its block
        pixel = image[corner].astype(int)
        tint = 0.22 * colors + 0.78 * 255
        assert np.abs(tint - pixel).max(1).min() <= 2
    assert len({tuple(image[c]) for c in ((5, 5), (5, 394), (394, 5), (394, 394))}) == 4
    assert (image[:400] == 0).all(2).sum() > 400  # the box's black frame, labels and the scale bar
    legend = image[400:]
    assert (legend == WHITE).all(2).mean() > 0.8
    for b in range(4):  # a swatch of each block's colour
        assert (legend == colors[b]).all(2).sum() >= 100


def fake_reconstruction(cams: np.ndarray, points: np.ndarray):
    """What draw_cameras reads of a pycolmap Reconstruction."""
    images = {i: SimpleNamespace(projection_center=lambda c=c: c) for i, c in enumerate(cams)}
    return SimpleNamespace(image=images.__getitem__, reg_image_ids=lambda: list(images),
                           points3D={i: SimpleNamespace(xyz=x) for i, x in enumerate(points)})


def test_cameras_picture_dots_points_legend_and_scale_bar(tmp_path):
    cams = np.array([[20.0, 20.0, 5.0], [80.0, 20.0, 5.0], [20.0, 80.0, 5.0], [80.0, 80.0, 5.0]])
    points = np.random.default_rng(0).uniform(0, 100, (2000, 3))
    report = {"images_registered": 4, "images_total": 5, "points": 2000}
    draw_cameras(tmp_path / "cameras.png", fake_reconstruction(cams, points), report, georeferenced=True)
    image = cv2.imread(str(tmp_path / "cameras.png"))
    assert image.shape == (SIZE, SIZE, 3)
    window = map_window(cams[:, :2], points[:, :2], SIZE)
    for u, v in window.pixels(cams[:, :2]):
        assert image[v, u].tolist() == list(CAMERA_RED)
    assert (image == POINT_GREY).all(2).sum() > 1000
    assert (image[:50, :400] == 0).all(2).sum() > 100  # the two legend lines, upper left
    assert (image[SIZE - 16:SIZE - 13, 10:50] == 0).all()  # the scale bar, lower left


def test_table_plot_frame_dots_and_legend(tmp_path):
    rows = gather([make_run(tmp_path, "one", steps=100), make_run(tmp_path, "two", steps=200, psnr=22.0)])
    plot_psnr_vs_steps(rows, tmp_path / "plot.png")
    image = cv2.imread(str(tmp_path / "plot.png"))
    assert image.shape == (480, 820, 3)
    left, top, right, bottom = PLOT_BOX
    assert (image[top + 1:bottom, left] == 0).all() and (image[bottom, left:right] == 0).all()  # the frame
    assert (image[:, right + 10:] != WHITE).any(2).sum() > 200  # the legend right of the axes
    for i in range(2):  # each run's line, dot and swatch in its colour
        assert (image == TAB10[i]).all(2).sum() > 150
    assert (image[:, :32] != WHITE).any(2).sum() > 50  # the upright y label
