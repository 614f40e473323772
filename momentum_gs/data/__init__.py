"""Data: COLMAP models, cameras, images, dataset layouts and the synthetic city."""
