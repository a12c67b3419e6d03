# Every target creates and reuses .venv at the repository root.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo test bench lint docs clean

install: $(STAMP)

# torch is installed through constraints.txt, which pins the CPU build. uv installs (about 10 s
# against pip's 2.5 min on a 2-core machine), from the same local wheel folders pip is configured
# with (pip's find-links); where uv cannot be had, pip installs. Both compile the bytecode at
# install (pip does by default): where PYTHONDONTWRITEBYTECODE is set, nothing else would, and every
# process (each CLI call, each Ray worker) would compile torch's sources again, 10 s against 4 s.
FIND_LINKS = $(foreach d,$(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null),--find-links $(d))
$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	( $(BIN)/python -m pip install --quiet --disable-pip-version-check uv 2>/dev/null \
	  && $(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python $(FIND_LINKS) -c constraints.txt -e '.[dev,hf]' ) \
	|| $(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,hf]'
	touch $(STAMP)

# The built-in default task, with a latency budget of half the baseline's.
demo: $(STAMP)
	$(BIN)/prunepilot search --budget 2x --trials 40

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/latency_predictor.py
	$(BIN)/python benchmarks/proxy_fidelity.py
	rm -rf benchmarks/results/search_quality-runs
	$(BIN)/python benchmarks/search_quality.py --keep benchmarks/results/search_quality-runs
	$(BIN)/python benchmarks/promotion.py benchmarks/results/search_quality.json benchmarks/results/search_quality-runs
	$(BIN)/python benchmarks/search_quality.py --tasks mnist,hf_resnet --tight-only --trials 24 \
	  --methods prunepilot,uniform_l1,global_lamp,global_taylor --json benchmarks/results/search_quality-recipes.json
	$(BIN)/python benchmarks/front_honesty.py
	$(BIN)/python benchmarks/trial_phases.py --trials 40
	$(BIN)/python benchmarks/ray_scaling.py
	$(BIN)/python benchmarks/ray_scaling.py --no-gate
	$(BIN)/python benchmarks/crash_recovery.py
	$(BIN)/python benchmarks/pruning_families.py
	$(BIN)/python benchmarks/pruning_families.py --part sparsity
	$(BIN)/python benchmarks/pruning_families.py --part tabular
	$(BIN)/python benchmarks/zoo.py
	$(BIN)/python benchmarks/discovery_scale.py
	$(BIN)/python benchmarks/own_outputs.py
	$(BIN)/python benchmarks/transformer_heads.py
	$(BIN)/python benchmarks/quantization.py
	$(BIN)/python benchmarks/quantization.py --budget 40% --seeds 0 1 --results benchmarks/results/quantization-40.json

# The settings reference's table, examples/digits.toml and docs/job.schema.json, written from the
# settings' declarations (a test fails when a committed one is stale).
docs: $(STAMP)
	$(BIN)/python -m prunepilot.write_docs

lint: $(STAMP)
	$(BIN)/ruff check prunepilot tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
