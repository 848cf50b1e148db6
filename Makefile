# Quick start: `make demo` (install + VidFace demo) and `make test` (install + test suite). Both are idempotent.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
INSTALLED := $(VENV)/.vfsr-installed

.PHONY: install demo test lint

$(INSTALLED): setup.py
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e '.[test,app]'
	# facenet-pytorch (MTCNN, weights inside its wheel) pins torch<2.3 in its metadata: install it without its deps so
	# it never downgrades torch; vfsr_restore uses only its MTCNN networks and weight files.
	$(PYTHON) -m pip install --quiet --no-deps facenet-pytorch==2.6.0
	touch $@

install: $(INSTALLED)

# demo.py: build the astronaut TUFs set, train a small VidFace on the CPU, score it and bicubic on the same clips;
# then restore a clip of a tiny moving face (same photo) with that VidFace, and say what it wrote and what to open.
demo: $(INSTALLED)
	$(PYTHON) demo.py

# pytest exits 5 when it collects no test; that is not a failure of the suite.
test: $(INSTALLED)
	$(PYTHON) -m ruff check .
	$(PYTHON) -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then exit 0; else exit $$rc; fi

lint: $(INSTALLED)
	$(PYTHON) -m ruff check .
