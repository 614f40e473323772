PYTHON ?= python3
# pytest-xdist's workers for make test: the CI machine's 2 cores (each training test uses the cores it finds)
TEST_WORKERS ?= 2
KERNEL_TESTS = tests/test_fused_compositor.py tests/test_losses.py tests/test_model.py tests/test_anchor_filter.py

# One line naming the CPU kernels, built first for the target MOMENTUM_GS_MARCH names: a build under pytest would
# be silent (pytest captures what a test prints), this one shows its progress bar.
KERNELS = $(PYTHON) -c "from momentum_gs.render.kernels import kernels_in_use; print(kernels_in_use())"
# gsplat's pure-PyTorch reference functions (no CUDA build, no dependencies) for the projection's peer check
GSPLAT_REFERENCE = $(PYTHON) -m pip install -q --no-deps gsplat==1.5.3 \
	|| echo "gsplat not installed: the peer check against it is skipped"

.PHONY: setup test test-heavy test-fast demo bench

setup:
	PYTHON=$(PYTHON) bash scripts/setup.sh

test: setup
	$(GSPLAT_REFERENCE)
	@# two workers (pytest-xdist), each file's tests on one (tests/conftest.py); then the tests that measure the
	@# wall clock, alone. The heavy tests (COLMAP on photos, a real browser) are make test-heavy's.
	$(PYTHON) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup -m "not clock and not heavy" --durations=15 tests
	$(PYTHON) -m pytest -q -m "clock and not heavy" --durations=5 tests
	@# the C++ kernels' tests again, built for the AVX2 baseline most x86 CPUs have (the run above used -march=native)
	if [ "$$(uname -m)" = x86_64 ]; then MOMENTUM_GS_MARCH=x86-64-v3 $(KERNELS) && \
		MOMENTUM_GS_MARCH=x86-64-v3 $(PYTHON) -m pytest -q $(KERNEL_TESTS); fi
	@# and for plain x86-64 (SSE2): 16-byte vectors, NEON's width, run here (aarch64 builds are only compiled)
	if [ "$$(uname -m)" = x86_64 ]; then MOMENTUM_GS_MARCH=x86-64 $(KERNELS) && \
		MOMENTUM_GS_MARCH=x86-64 $(PYTHON) -m pytest -q $(KERNEL_TESTS); fi

# The tests make test leaves out (docs/decisions/0024-parallel-test-run.md): COLMAP's reconstruction of photos, real
# and generated, from brighton_beach's SfM to the 2-minute site, and the pages drawn in a real browser. CI runs them
# after make test, in the same two steps.
test-heavy: setup
	$(GSPLAT_REFERENCE)
	$(PYTHON) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup -m "heavy and not clock" --durations=10 tests
	$(PYTHON) -m pytest -q -m "heavy and clock" --durations=5 tests

# The inner loop: every test but those marked slow (training, kernel builds, COLMAP, or over ~5 s each).
test-fast: setup
	$(PYTHON) -m pytest -q -m "not slow" --durations=10 tests

demo: setup
	$(PYTHON) -m momentum_gs.cli demo

bench: setup
	$(PYTHON) scripts/bench_rasterizer.py
