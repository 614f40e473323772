"""Our C++ kernels for CPU renders (``csrc/``): :mod:`.build` finds, compiles and loads them and says which
kernels a render takes (the config's ``render.kernels``, overridden by ``MOMENTUM_GS_KERNELS``); :mod:`.ops`
holds them as autograd functions and ops, each falling back to its PyTorch reference."""

from momentum_gs.render.kernels.build import Build, describe_cpu, kernels_in_use, kernels_mode, use_kernels

__all__ = ["Build", "describe_cpu", "kernels_in_use", "kernels_mode", "use_kernels"]
