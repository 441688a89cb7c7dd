# make demo: install luff into .venv and run its main job against the embedded registry.
PYTHON ?= python3
VENV ?= .venv

.PHONY: demo test docs bench soak

demo:
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/python -m pip install -q --disable-pip-version-check -e .
	@$(VENV)/bin/python examples/demo.py

test:
	bash scripts/test.sh

# make docs: serve the documentation site at http://127.0.0.1:8000 while you edit it.
docs:
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/python -m pip install -q --disable-pip-version-check -e '.[docs]'
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve

# make bench [BEFORE=PATH]: every benchmark, 9 runs each; with BEFORE (another luff, the old
# one say) that luff is timed in the same runs too (where a bench can compare two luffs).
BEFORE ?=
bench:
	for b in startup copy pull index server big small; do \
		$(VENV)/bin/python bench/bench_$$b.py --runs 9 $(if $(BEFORE),--before $(BEFORE)) || exit 1; \
	done
	for b in mutate referrers append_race; do $(VENV)/bin/python bench/bench_$$b.py --runs 9 || exit 1; done

# make soak: 1,000 copies per registry kind through proxies that inject random faults (15 %).
soak:
	$(VENV)/bin/python -m tests.test_faults --copies 1000
