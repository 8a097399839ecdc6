# Every target sets itself up first (tools/install.sh is idempotent).
VENV ?= .venv
PY := $(CURDIR)/$(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

# The previous ESPnet release (espnet 202511, Python 3.11) in its own venv, from its own lock.
OLDER_VENV ?= .venv-espnet202511
OLDER_LOCK := requirements-lock-espnet202511.txt
# What touches espnet2: the trainer, the optimizer wrapper, the launchers, the recipe stages,
# exposure scoring and the list of espnet2 symbols the package relies on.
OLDER_TESTS := tests/espnet2 tests/core/optimizers/test_per_core.py tests/recipe/test_stage_script.py \
	tests/recipe/test_stage_keys.py tests/measurement/exposure/test_exposure_run.py

.PHONY: install test demo study bench test-espnet202511

install:
	VENV=$(VENV) bash tools/install.sh

test: install
	$(PY) -m pytest -q tests

demo: install
	cd egs2/synth_demo/asr1 && ./run.sh

study: install
	cd egs2/synth_demo/asr1 && ./run.sh --demo_size study

test-espnet202511:
	VENV=$(OLDER_VENV) LOCK=$(OLDER_LOCK) bash tools/install.sh
	PATH=$(CURDIR)/$(OLDER_VENV)/bin:$$PATH $(CURDIR)/$(OLDER_VENV)/bin/python -m pytest -q $(OLDER_TESTS)

bench: install
	$(PY) -m bench.run
