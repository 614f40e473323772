"""momentum_gs: large-scene 3D Gaussian Splatting with block-wise training and a momentum teacher."""

__version__ = "0.1.0"
