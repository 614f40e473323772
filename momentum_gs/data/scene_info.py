"""``scene.json``: what `mgs synth` says about the scene it made, read by the partition (the up axis), the
synthetic scene's tests (the city's bounds) and `mgs mesh` (the ground-truth mesh).

Every key is optional (a scene of photos may carry a hand-written ``scene.json`` with only ``up``); keys the
readers do not use (``generator``, ``settings``...) are not looked into. ``mesh`` names a file beside
``scene.json``: a path leaving the scene's folder is refused, so a scene cannot have a mesh scored against a file
elsewhere.
"""

from __future__ import annotations

from pathlib import Path

from momentum_gs.io.schema import FileName, ListOf, Number, Obj, read_json
from momentum_gs.ranges import FINITE, POSITIVE, Range

SCENE_INFO_NAME = "scene.json"
POINT = ListOf(Number(FINITE), 3, 3)  # [x, y, z], model units
SCENE_INFO = Obj({}, {
    "up": ListOf(Number(Range(-1, 1)), 3, 3),  # the world's up direction, a unit vector
    "metres_per_unit": Number(POSITIVE),
    "city_bounds": ListOf(POINT, 2, 2),  # [[xmin, ymin, zmin], [xmax, ymax, zmax]]
    "mesh": FileName(),  # the ground-truth surface, a PLY file beside scene.json
})


def read_scene_info(data_dir: str | Path) -> dict | None:
    """``data_dir/scene.json`` checked against :data:`SCENE_INFO`, or None when the scene has none; a UserError
    names the file, the key and what was expected."""
    path = Path(data_dir) / SCENE_INFO_NAME
    if not path.exists():
        return None
    return read_json(path, SCENE_INFO, "the scene description",
                     "correct it, or make the scene again with mgs synth")
