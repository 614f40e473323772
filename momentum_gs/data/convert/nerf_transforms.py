"""A NeRF-style ``transforms.json`` (MatrixCity, instant-ngp, colmap2nerf, nerfstudio's single-camera files): its
declared shape, :data:`TRANSFORMS`, and :func:`read_transforms`.

Only what ``mgs convert matrixcity`` reads is declared: each frame's ``file_path`` and pose (``transform_matrix``,
or MatrixCity's raw ``rot_mat``), and the intrinsics and lens distortion, per frame or per file. Other keys
(``aabb_scale``, nerfstudio's ``camera_model``...) are not looked into. A key read only when it is not null
(``w``, ``cx``, ``k1``...) may be null.

A ``file_path`` is relative. MatrixCity's lead out of the pose folder (``../block_1/0000``); the converter looks
for the image only inside the ``--images`` folders and the file's own folder (see
:func:`~momentum_gs.data.convert.matrixcity._find_image`), so an absolute path, which would name a file
anywhere on the machine, is refused here.
"""

from __future__ import annotations

import math
from pathlib import Path, PurePosixPath

from momentum_gs.errors import UserError
from momentum_gs.io.schema import Flag, ListOf, Maybe, Number, Obj, Text, read_json, shown
from momentum_gs.ranges import MAX_WIDTH, Range

# A pose's entries: a (scaled) rotation's are small, a position within 1e15 units (as a camera path's): products
# of such entries stay far from float64's overflow.
ENTRY = Number(Range(-1e15, 1e15), note="a rotation's entries are small, a position's within 1e15")
MATRIX = ListOf(ListOf(ENTRY, 4, 4), 3, 4)  # 4 rows of 4, or the top 3 rows
SIDE = Maybe(Number(Range(1, MAX_WIDTH), note="pixels"))
FOCAL = Number(Range(0, 1e9, open_low=True, why="pixels: 10^9 on a 65536-pixel image is a field of view under "
                     "0.004 degrees, narrower than any telescope's"))
ANGLE = Number(Range(0, math.pi, open_low=True, open_high=True), note="a field of view, radians")
CENTRE = Maybe(Number(Range(-MAX_WIDTH, 2 * MAX_WIDTH), note="pixels, within an image's width of the image"))
COEFFICIENT = Maybe(Number(Range(-1e6, 1e6), note="a lens distortion coefficient"))
CAMERA = {"w": SIDE, "h": SIDE, "fl_x": FOCAL, "fl_y": FOCAL, "cx": CENTRE, "cy": CENTRE,
          "camera_angle_x": ANGLE, "camera_angle_y": Maybe(ANGLE), "is_fisheye": Maybe(Flag()),
          **{key: COEFFICIENT for key in ("k1", "k2", "k3", "k4", "k5", "k6", "p1", "p2")}}
FRAME = Obj({"file_path": Text()}, {"transform_matrix": MATRIX, "rot_mat": MATRIX, **CAMERA})
TRANSFORMS = Obj({"frames": ListOf(FRAME, least=1)}, CAMERA)


def read_transforms(path: str | Path) -> dict:
    """The transforms file at ``path`` checked against :data:`TRANSFORMS`, every ``file_path`` relative and every
    frame with a pose; a UserError in one line names the file, the key and what was expected."""
    source = f"the transforms file {path}"
    meta = read_json(path, TRANSFORMS, "the transforms file", "give a NeRF/MatrixCity transforms.json")
    for i, frame in enumerate(meta["frames"]):
        name = frame["file_path"]
        parts = PurePosixPath(name.replace("\\", "/")).parts
        if not name.strip() or "\0" in name or not parts or parts[0] == "/" or ":" in parts[0]:
            raise UserError(f"{source}: frames[{i}].file_path is {shown(name)}, expected a relative path to an "
                            "image (looked for in the --images folders and the file's own folder)")
        if frame.get("transform_matrix", frame.get("rot_mat")) is None:
            raise UserError(f"{source}: frames[{i}] has no transform_matrix (nor rot_mat), expected a camera-to-world "
                            "matrix (4x4, or its top 3 rows)")
    return meta
