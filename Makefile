# ctpnp set-up and the two commands of the README.
#   make demo   create .venv, install, simulate a low-dose scan of pydicom's CT slice,
#               reconstruct it (FBP, TV, PnP) and write images + a side-by-side PNG
#   make test   create .venv, install, lint and run the test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-all bench install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# the CPU build of torch first: any other torch request pulls a multi-GB CUDA build
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) pipelines/demo.py --out demo_output

test: $(STAMP)
	$(PY) -m ruff check ctpnp tests benchmarks pipelines
	$(PY) -m pytest -q -m "not slow"

test-all: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	for script in benchmarks/bench_*.py; do $(PY) $$script || exit 1; done

clean:
	rm -rf $(VENV) demo_output
