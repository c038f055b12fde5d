# NanoDet -> TFJS toolkit. Every install step lives here: the venv and node_modules are made on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
MODEL ?= m-416
CONFIG ?=
CHECKPOINT ?=
OPSET ?=
QUANTIZE ?=
BACKEND ?=
FORCE ?=
IMAGES ?=
ANNOTATIONS ?=
ARTIFACTS ?=
PATCHES ?=

# Options passed through to the CLI only when set.
opt = $(if $(strip $(2)),$(1) $(2))
MODEL_ARGS = $(if $(strip $(CONFIG)),--config $(CONFIG),--model $(MODEL)) $(call opt,--checkpoint,$(CHECKPOINT))
CONVERT_ARGS = $(MODEL_ARGS) $(call opt,--opset,$(OPSET)) $(call opt,--quantize,$(QUANTIZE)) \
	$(call opt,--backend,$(BACKEND)) $(call opt,--patches,$(PATCHES)) $(if $(filter 1 yes true,$(FORCE)),--force)
DATA_ARGS = $(call opt,--images,$(IMAGES)) $(call opt,--annotations,$(ANNOTATIONS)) $(call opt,--artifacts,$(ARTIFACTS))

.PHONY: all venv js convert validate check bench test test-fast clean
all: convert

venv: $(VENV)/.installed
$(VENV)/.installed: requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

js: js/node_modules/.installed
js/node_modules/.installed: js/package.json js/package-lock.json
	@command -v npm >/dev/null || { echo "error: npm (Node.js) not found on PATH: install Node.js >= 18" >&2; exit 2; }
	cd js && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

convert: venv js
	$(PY) -m converters.cli convert $(CONVERT_ARGS) $(DATA_ARGS)

validate: venv js
	$(PY) -m validation.cli validate $(MODEL_ARGS) $(DATA_ARGS)

check: venv js
	$(PY) -m validation.cli check $(MODEL_ARGS) $(DATA_ARGS)

bench: venv js
	$(PY) -m validation.bench $(MODEL_ARGS)

test: venv js
	$(PY) -m pytest -q tests

test-fast: venv
	$(PY) -m pytest -q tests -m "not slow"

clean:
	rm -rf artifacts test-output
