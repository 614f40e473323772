"""The GPS residuals' field: a model out of shape (drifting in scale, folded) is told from a GPS that wanders, on
generated residuals and on generated flights (the distortion matrix of momentum_gs.data.sfm.flight_matrix)."""

from __future__ import annotations

import numpy as np
import pytest

from momentum_gs.data.sfm import field as F
from momentum_gs.data.sfm.flight_matrix import distortions, run_case
from tests.helpers.gps_residuals import residuals, rows


@pytest.mark.parametrize("seed", range(5))
def test_noise_and_a_wandering_gps_are_not_taken_for_a_model_out_of_shape(seed):
    plan = rows()
    for noise, wander_m in ((1.0, 0.0), (5.0, 0.0), (15.0, 0.0), (5.0, 15.0)):
        found = F.measure(plan, residuals(plan, noise, seed, wander_m))
        assert F.problem(found) is None, (noise, wander_m, found)
        assert found.noise == pytest.approx(noise * np.sqrt(2), rel=0.45)


def test_a_scale_drifting_along_the_rows_depends_on_place():
    """A model stretched from 0.9 to 1.1 along x: 1-2 m that every row shares, whatever its time."""
    plan = rows()
    found = F.measure(plan, residuals(plan, 1.0) + np.c_[0.1 * plan[:, 0] ** 2 / 200 - 1.7, 0 * plan])
    assert found.place > 1.0 and found.place_f > F.FIELD_F
    assert "depends on place" in F.problem(found)


def test_a_fold_shows_in_the_heights_not_in_a_drift():
    plan = rows()
    t = np.linspace(0, 1, len(plan))
    drifting = residuals(plan, 5.0, 1)
    drifting[:, 2] += 120 * t + 0.02 * plan[:, 0]  # a barometric drift and a tilt of 1°: not a fold
    assert F.problem(F.measure(plan, drifting)) is None
    folded = drifting.copy()
    folded[:, 2] += 0.25 * np.abs(plan[:, 0]) - 12.5  # a roof along x, flown over row by row
    found = F.measure(plan, folded)
    assert found.height > F.HEIGHT_MIN_M and "altitudes" in F.problem(found)


def test_along_one_line_only_the_slow_part_can_tell():
    line = np.c_[np.linspace(-600, 600, 60), np.zeros(60)]
    consumer = residuals(line, 5.0, 2, 15.0, heights=False)
    assert F.problem(F.measure(line, consumer)) is None
    drifting = residuals(line, 1.0, 2, heights=False)
    drifting[:, 0] += 0.3 * line[:, 0] ** 2 / 1200 - 60  # scale 0.7 to 1.3 along the line: a parabola of 28 m
    assert "slowly" in F.problem(F.measure(line, drifting))


def test_too_few_photos_are_not_measured():
    plan = rows(2, 10)
    assert F.measure(plan, residuals(plan, 1.0)) is None


@pytest.mark.parametrize("case", [c for c in distortions() if c.noise == 1.0 and c.distortion != "shear"],
                         ids=lambda c: f"{c.pattern}-{c.distortion}-{'fw' if c.fixed_wing else 'mr'}")
def test_a_model_drifting_in_scale_or_folded_is_refused_against_a_good_gps(case):
    """A GPS right to 1 m: the model out of shape is refused, never written."""
    row = run_case(case)
    assert row["outcome"] == "refused", row


def test_a_slow_part_many_times_the_noise_is_not_a_gps():
    """Along a line a 6 m bend under 1 m of noise: within what a GPS wanders in metres, not against its noise."""
    line = np.c_[np.linspace(-600, 600, 60), np.zeros(60)]
    bent = residuals(line, 1.0, 3, heights=False)
    bent[:, 0] += 6.0 * np.sqrt(2) * np.sin(np.linspace(0, 2 * np.pi, 60))
    found = F.measure(line, bent)
    assert found.slow < F.WANDER_MAX_M and "times its" in F.problem(found)
