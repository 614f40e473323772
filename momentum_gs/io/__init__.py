"""Plumbing every floor uses: ``atomic`` (write beside the target, then rename), ``finite`` (no non-finite
model is used or written), ``budget`` (a request's memory checked before the work), ``programs`` (outside
programs from the PATH only), ``splat_transform`` (PlayCanvas's converter, the outside program the export
runs), ``checkpoint`` (named, versioned dictionaries, read without unpickling), ``mesh`` (triangle-mesh PLY),
``run_folder`` (the paths of a run folder) and ``schema`` (the declared shape of each file read, checked before
any work).
"""
