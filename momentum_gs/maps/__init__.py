"""The map products of a trained run: a true orthophoto and a surface model splatted straight down
(``mgs ortho``)."""
