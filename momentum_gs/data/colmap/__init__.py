"""COLMAP sparse models (``cameras``, ``images``, ``points3D``), binary or text.

``model``: the model in memory, the camera models training reads, quaternions and the checks; ``folder``: a model
folder read or written whole (``read_model``, ``write_model``); ``binary`` and ``text``: the two file formats.
"""
