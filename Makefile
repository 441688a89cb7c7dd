# make demo: install luff into .venv and run its main job against the embedded registry.
PYTHON ?= python3
VENV ?= .venv

.PHONY: demo test bench soak

demo:
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/python -m pip install -q --disable-pip-version-check -e .
	@$(VENV)/bin/python examples/demo.py

test:
	bash scripts/test.sh

# make bench [BEFORE=PATH]: every benchmark, 9 runs each; with BEFORE (another luff, the old
# one say) that luff is timed in the same runs too (bench_mutate has no such comparison).
BEFORE ?=
bench:
	for b in startup copy pull index server big small; do \
		$(VENV)/bin/python bench/bench_$$b.py --runs 9 $(if $(BEFORE),--before $(BEFORE)) || exit 1; \
	done
	$(VENV)/bin/python bench/bench_mutate.py --runs 9

# make soak: 1,000 copies per registry kind through proxies that inject random faults (15 %).
soak:
	$(VENV)/bin/python -m tests.test_faults --copies 1000
