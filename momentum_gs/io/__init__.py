"""Input/output: files written whole, checkpoints, run folders read back, and the exported formats.

- plumbing: ``atomic`` (write beside the target, then rename), ``finite`` (no non-finite model is used or
  written), ``budget`` (a request's memory checked before the work), ``programs`` (outside programs from
  the PATH only);
- runs: ``checkpoint`` (named, versioned dictionaries, read without unpickling), ``run_folder`` (a run
  folder read back: config, latest checkpoint, the blocks merged);
- exports: ``bake`` (anchors baked into standard 3D Gaussians), ``ply`` (the Scaffold-GS anchor PLY and
  decoder), ``splat`` and ``spz`` (web viewers' formats), ``web`` (the one-file HTML viewer,
  ``viewer.html``, and PlayCanvas SOG), ``mesh`` (triangle-mesh PLY).
"""
