"""A trained run out of the program: baking to standard 3D Gaussians, the file formats (PLY, .splat, .spz,
SOG, a web page, the Scaffold-GS layout), distillation into a compact student and the export's refinement."""
