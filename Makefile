PYTHON ?= python3

.PHONY: setup test demo bench

setup:
	PYTHON=$(PYTHON) bash scripts/setup.sh

test: setup
	@# gsplat's pure-PyTorch reference functions (no CUDA build, no dependencies) for the projection's peer check
	$(PYTHON) -m pip install -q --no-deps gsplat==1.5.3 || echo "gsplat not installed: the peer check against it is skipped"
	$(PYTHON) -m pytest -q tests

demo: setup
	$(PYTHON) -m momentum_gs.cli demo

bench: setup
	$(PYTHON) scripts/bench_rasterizer.py
