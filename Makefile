# The README's two commands. Each builds .venv (Python 3.12) on first use.
PYTHON ?= $(shell command -v python3.12 || echo python3)
VENV := .venv
STAMP := $(VENV)/.installed
DOCS_STAMP := $(VENV)/.installed-docs
RDDL_STAMP := $(VENV)/.installed-rddl

.PHONY: demo test bench docs clean

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/python -c 'import sys; assert sys.version_info >= (3, 12), "ppl_control needs Python >= 3.12, got " + sys.version'
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# The docs extra (mkdocs, mkdocstrings): for `make docs`, and for `make test` (tests/test_docs.py).
$(DOCS_STAMP): $(STAMP)
	$(VENV)/bin/python -m pip install --quiet -e '.[dev,docs]'
	@touch $(DOCS_STAMP)

# the rddl extra (models.rddl and its tests, the JaxPlan benchmark): pyRDDLGym-jax, rddlrepository
$(RDDL_STAMP): $(STAMP)
	$(VENV)/bin/python -m pip install --quiet -e '.[dev,rddl]'
	@touch $(RDDL_STAMP)

demo: $(STAMP)
	$(VENV)/bin/ppl-control demo

test: $(DOCS_STAMP) $(RDDL_STAMP)
	$(VENV)/bin/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder -q --durations=15

bench: $(STAMP) $(RDDL_STAMP)
	$(VENV)/bin/python -m benchmarks.run_all

docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict   # -> build/site

clean:
	rm -rf $(VENV) demo-output .pytest_cache build/site build/api-source
