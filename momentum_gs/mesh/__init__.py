"""Surfaces of a trained scene: TSDF fusion of rendered depths and marching tetrahedra, block by block."""
