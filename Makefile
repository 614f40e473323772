PYTHON ?= python3

.PHONY: setup test demo bench

setup:
	PYTHON=$(PYTHON) bash scripts/setup.sh

test: setup
	$(PYTHON) -m pytest -q tests

demo: setup
	$(PYTHON) -m momentum_gs.cli demo

bench: setup
	$(PYTHON) scripts/bench_rasterizer.py
