"""scripts/photo_agreement.py's parts: colours read between pixels, the points a camera sees, and the agreement of
the photos that see a point."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers.script_module import load_script


@pytest.fixture(scope="module")
def script():
    return load_script("photo_agreement")  # it reads ortho_check.py beside it


def test_colours_between_pixels_are_read_bilinearly(script):
    image = np.zeros((4, 4, 3), np.float32)
    image[:, 2:] = 100.0  # the right half
    found = script.sample(image, np.array([1.5, 2.0, 2.5, 3.0]), np.array([1.5, 1.5, 1.5, 1.5]))
    assert found[:, 0].tolist() == [0.0, 50.0, 100.0, 100.0]


def test_agreement_is_the_tightest_group_of_photos(script):
    n = script.SEEN_AT_MOST
    found = np.full((3, n, 3), np.nan, np.float32)
    found[0, :5] = [[10, 10, 10], [10, 10, 10], [10, 10, 10], [200, 0, 0], [0, 200, 0]]  # three alike
    found[1, :4] = [[10, 10, 10], [14, 13, 10], [200, 0, 0], [0, 0, 200]]  # two alike, 5 apart
    found[2, :2] = [[10, 10, 10], [10, 10, 10]]  # two photos only
    assert script.agreement(found, 3).tolist()[0] == 0.0
    assert script.agreement(found, 2).tolist()[:2] == [0.0, 5.0]
    assert np.isinf(script.agreement(found, 3)[2])  # fewer than three photos see it


class _Camera:
    """A camera 10 units above the origin looking straight down, 20 × 20 pixels."""

    def __init__(self):
        self.width = self.height = 20
        self.K = torch.tensor([[10.0, 0, 10], [0, 10.0, 10], [0, 0, 1]], dtype=torch.float64)
        self.world_to_cam = torch.tensor([[1.0, 0, 0, 0], [0, -1, 0, 0], [0, 0, -1, 10], [0, 0, 0, 1]],
                                         dtype=torch.float64)


def test_a_point_takes_the_colour_of_the_pixel_it_lands_on_in_each_photo(script):
    camera = _Camera()
    image = np.zeros((20, 20, 3), np.float32)
    image[10, 12] = [255.0, 0, 0]  # its centre (u, v) = (12.5, 10.5) sees world (2.5, -0.5, 0)
    found = script.colours(np.array([[2.5, -0.5, 0.0], [0.0, 0.0, 20.0], [50.0, 0.0, 0.0]]), [camera, camera],
                           [image, image])
    assert found[0, :2, 0].tolist() == [255.0, 255.0] and np.isnan(found[0, 2:]).all()
    assert np.isnan(found[1]).all() and np.isnan(found[2]).all()  # behind the camera; outside its image
