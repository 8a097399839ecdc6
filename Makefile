# Every target sets itself up first (tools/install.sh is idempotent).
VENV ?= .venv
PY := $(CURDIR)/$(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: install test demo study bench

install:
	VENV=$(VENV) bash tools/install.sh

test: install
	$(PY) -m pytest -q tests

demo: install
	cd egs2/synth_demo/asr1 && ./run.sh

study: install
	cd egs2/synth_demo/asr1 && ./run.sh --demo_size study

bench: install
	$(PY) -m bench.run
