"""Scenes that are valid but absurd (scaled by a million, cameras looking away, colours past 8 bits) are said in
one warning line each, with what to do, before training starts."""

from __future__ import annotations

import shutil
import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch

from momentum_gs.cli import main
from momentum_gs.config import DataConfig
from momentum_gs.data.colmap.folder import read_model, write_model
from momentum_gs.data.sanity import scene_warnings
from momentum_gs.data.scene import load_scene
from momentum_gs.errors import DataWarning


@pytest.fixture(scope="module")
def tiny(tiny_scene):
    return load_scene(DataConfig(path=str(tiny_scene)), images=False)


def _scaled(cameras, factor):
    out = []
    for camera in cameras:
        w2c = camera.world_to_cam.clone()
        w2c[:3, 3] *= factor
        out.append(replace(camera, world_to_cam=w2c))
    return out


def test_a_sound_scene_gives_no_warning(tiny):
    assert scene_warnings(tiny.train, tiny.points, near=0.2) == []


@pytest.mark.parametrize("factor, fragment", [(1e6, "Scale the model down"), (1e-6, "Scale the model up")])
def test_a_scene_in_absurd_units_is_said(tiny, factor, fragment):
    lines = scene_warnings(_scaled(tiny.train, factor), tiny.points * factor, near=0.2)
    assert len(lines) == 1 and fragment in lines[0], lines
    assert scene_warnings(_scaled(tiny.train, 1e3), tiny.points * 1e3, near=0.2) == []  # metres to millimetres


def test_cameras_that_look_away_from_every_point_are_said(tiny):
    flip = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0]))  # turned around: the scene is behind every camera
    away = [replace(camera, world_to_cam=flip @ camera.world_to_cam) for camera in tiny.train]
    lines = scene_warnings(away, tiny.points, near=0.2)
    assert len(lines) == 1 and lines[0].startswith(f"{len(away)} of {len(away)} training cameras see none"), lines
    assert "world-to-camera" in lines[0]
    some = away[:2] + tiny.train[2:]
    assert scene_warnings(some, tiny.points, near=0.2)[0].startswith(f"2 of {len(some)} training cameras")


def test_colours_past_8_bits_are_clipped_and_said(tiny_scene, tmp_path):
    model = read_model(tiny_scene / "train" / "sparse" / "0")
    write_model(model, tmp_path, binary=False)
    lines = (tmp_path / "points3D.txt").read_text().splitlines()
    first = next(i for i, line in enumerate(lines) if line and not line.startswith("#"))
    fields = lines[first].split()
    fields[4:7] = ["300", "-5", "65535"]
    lines[first] = " ".join(fields)
    (tmp_path / "points3D.txt").write_text("\n".join(lines) + "\n")
    with pytest.warns(DataWarning, match="1 points have colours outside 0-255 .* divide them by 257"):
        read = read_model(tmp_path)
    assert read.colors.dtype == np.uint8 and read.colors[0].tolist() == [255, 0, 255]  # clipped, not wrapped
    np.testing.assert_array_equal(read.colors[1:], model.colors[1:])


@pytest.mark.slow
def test_mgs_train_warns_in_one_line_and_goes_on(tiny_scene, tmp_path, capsys):
    scene = tmp_path / "scene"
    shutil.copytree(tiny_scene, scene)
    for split in ("train", "val"):
        sparse = scene / split / "sparse" / "0"
        model = read_model(sparse)
        model.points = model.points * 1e6
        for image in model.images.values():
            image.tvec = image.tvec * 1e6
        write_model(model, sparse)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no other warning on the way
        status = main(["train", "--data", str(scene), "--out", str(tmp_path / "run"), "optim.steps=1",
                       "optim.lr_max_steps=0", "log.tensorboard=false", "device=cpu"])  # a schedule within the run
    err = capsys.readouterr().err
    assert status == 0
    warned = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert len(warned) == 1 and "Scale the model down" in warned[0], err
