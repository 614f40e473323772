"""Baked Gaussians cut into tiles with levels of detail, block by block: the tree of tiles (``lod``), its tiles
as GLB files of glTF ``KHR_gaussian_splatting`` (``gltf``) under an OGC 3D Tiles 1.1 ``tileset.json``
(``tileset``), a run written that way one block at a time (``blocks``: ``mgs export --format 3dtiles``), and the
same trees as PlayCanvas's streamed SOG (``sog_lod``: ``--format sog-lod``)."""
