"""Data: scenes on disk, and the ways to make them.

- reading a scene: ``scene`` (the layouts → cameras and points), ``colmap`` (COLMAP models, binary or text),
  ``camera`` (pinhole camera), ``undistort`` (COLMAP camera models), ``images`` (the decoded, cached images),
  ``sanity`` (warnings about scenes training cannot make sense of), ``georef`` (WGS84 ↔ East-North-Up);
- making one: ``sfm`` (``mgs sfm``: photos to a georeferenced scene with pycolmap), ``convert`` (``mgs
  convert``: the public datasets into the Mill-19 layout), ``synthetic`` (the procedural aerial city, its
  ground-truth mesh and drone surveys).
"""
