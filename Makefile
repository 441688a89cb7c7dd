# make demo: install luff into .venv and run its main job against the embedded registry.
PYTHON ?= python3
VENV ?= .venv

.PHONY: demo test bench

demo:
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/python -m pip install -q --disable-pip-version-check -e .
	@$(VENV)/bin/python examples/demo.py

test:
	bash scripts/test.sh

bench:
	for b in copy pull index mutate server; do $(VENV)/bin/python bench/bench_$$b.py --runs 9 || exit 1; done
