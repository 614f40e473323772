"""`mgs sfm`: from a folder of (drone) photos to a georeferenced training scene, with pycolmap.

``run.run_sfm(photos, out)`` writes ``out/images`` + ``out/sparse/0`` (the layout `mgs train` reads; the camera
keeps its distortion, which the image cache undistorts), ``out/sfm.json`` (the checks' figures),
``out/cameras.png`` and, when the photos carry GPS, ``out/georef.json``: the scene is then in East-North-Up
metres at the capture's centre, levelled (:mod:`momentum_gs.data.sfm.level` says how up is found and when the
GPS altitude is trusted). Nothing in ``out`` changes unless every check passed; a failed run leaves its
report (``"ok": false`` and the reason) and picture in ``out/sfm/``, for diagnosis, with the cached features.
"""

from momentum_gs.data.sfm.options import SfmOptions

__all__ = ["SfmOptions"]  # the run itself: momentum_gs.data.sfm.run (run_sfm, run_lines), imported when used
