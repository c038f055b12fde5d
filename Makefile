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
# QUANTIZE=uint8|float16 KEEP=<patterns of TFJS weight names kept float32>; QUANTIZE=auto AP_BUDGET=0.002
KEEP ?=
AP_BUDGET ?=
BACKEND ?=
FORCE ?=
IMAGES ?=
ANNOTATIONS ?=
ARTIFACTS ?=
LIMIT ?=
STAGES ?=
PATCHES ?=
LOCALIZE ?=
INPUT_SIZE ?=
CONFIGS ?=
ZOO_OUT ?=
LAYOUT ?=
BROWSER ?=
PORT ?=

# Options passed through to the CLI only when set.
opt = $(if $(strip $(2)),$(1) $(2))
MODEL_ARGS = $(if $(strip $(CONFIG)),--config $(CONFIG),--model $(MODEL)) $(call opt,--checkpoint,$(CHECKPOINT)) \
	$(call opt,--input-size,$(INPUT_SIZE))
CONVERT_ARGS = $(MODEL_ARGS) $(call opt,--opset,$(OPSET)) $(call opt,--quantize,$(QUANTIZE)) \
	$(if $(strip $(KEEP)),--keep '$(KEEP)') $(call opt,--ap-budget,$(AP_BUDGET)) \
	$(call opt,--backend,$(BACKEND)) $(call opt,--patches,$(PATCHES)) $(call opt,--layout,$(LAYOUT)) \
	$(if $(filter 1 yes true,$(FORCE)),--force) $(if $(filter 1 yes true,$(BROWSER)),--browser-stages)
DATA_ARGS = $(call opt,--images,$(IMAGES)) $(call opt,--annotations,$(ANNOTATIONS)) $(call opt,--artifacts,$(ARTIFACTS))
# validate / accept / check: a subset of the images (LIMIT=N, the first N); validate and check: of the stages
SUBSET_ARGS = $(call opt,--limit,$(LIMIT))
STAGE_ARGS = $(call opt,--stages,$(STAGES))

.PHONY: all venv js browser demo js-check convert validate accept check bench zoo test test-long test-fast clean
all: convert

venv: $(VENV)/.installed
$(VENV)/.installed: requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@# (a pip config may name local index folders that do not exist; pip's warning about each is filtered out)
	set -o pipefail; $(PY) -m pip install --quiet --disable-pip-version-check --no-deps -r requirements.lock 2>&1 \
		| { grep -v 'is ignored: it is neither a file nor a directory' || true; }
	@# the project's packages are imported from the work tree (a .pth file; no build step, no wheel package needed)
	$(PY) -c 'import pathlib, sysconfig; pathlib.Path(sysconfig.get_paths()["purelib"], "nanodet_tfjs.pth").write_text("$(CURDIR)\n")'
	@touch $@

js: js/node_modules/.installed
js/node_modules/.installed: js/package.json js/package-lock.json
	@command -v npm >/dev/null || { echo "error: npm (Node.js) not found on PATH: install Node.js >= 20.9" >&2; exit 2; }
	cd js && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# Headless Chromium for the demo-page test, the bench's Chromium rows and the browser validation stages (Debian's
# package; never a browser download). Needs root for apt-get.
CHROMIUM ?= /usr/bin/chromium
browser: js
	@if [ -x "$(CHROMIUM)" ]; then echo "chromium present: $(CHROMIUM)"; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else echo "error: $(CHROMIUM) absent: run 'make browser' as root (it installs Debian's chromium with apt-get)" >&2; exit 2; fi

# The demo page (js/demo/) served cross-origin isolated (threads allowed) for artifacts/$(MODEL) (ARTIFACT=DIR
# another folder; PORT=N, default 8000); prints its URL, runs until Ctrl-C.
demo: venv js
	$(PY) -m commands demo --model $(MODEL) $(call opt,--artifact,$(ARTIFACT)) $(call opt,--port,$(PORT))

# The JS module shipped beside tfjs/model.json: decode parity + end-to-end AP in Node (wasm).
js-check: venv js
	$(PY) -m commands js-check $(if $(strip $(CONFIG)),--config $(CONFIG),--model $(MODEL)) \
		$(call opt,--input-size,$(INPUT_SIZE)) $(call opt,--artifact,$(ARTIFACT)) \
		$(call opt,--images,$(IMAGES)) $(call opt,--annotations,$(ANNOTATIONS))

convert: venv js
	$(PY) -m commands convert $(CONVERT_ARGS) $(DATA_ARGS)

# An ad-hoc validation: written to artifacts/<name>/validations/<data>/, never over the accepted figures.
validate: venv js
	$(PY) -m commands validate $(MODEL_ARGS) $(DATA_ARGS) $(SUBSET_ARGS) $(STAGE_ARGS) \
		$(if $(filter 1 yes true,$(LOCALIZE)),--localize)

# The one step that changes the accepted figures (artifacts/<name>/validation.json) that `check` compares with.
accept: venv js
	$(PY) -m commands accept $(MODEL_ARGS) $(DATA_ARGS) $(SUBSET_ARGS)

check: venv js
	$(PY) -m commands check $(MODEL_ARGS) $(DATA_ARGS) $(SUBSET_ARGS) $(STAGE_ARGS)

bench: venv js
	$(PY) -m commands bench $(MODEL_ARGS)

# Every config of a folder (CONFIGS=DIR; default: the shared upstream copies) converted and validated on a few
# images (LIMIT=N, default 8), one table: artifacts/zoo/zoo.md and zoo.json (ZOO_OUT=DIR elsewhere).
zoo: venv js
	$(PY) -m commands zoo $(call opt,--configs,$(CONFIGS)) $(call opt,--backend,$(BACKEND)) \
		$(call opt,--limit,$(LIMIT)) $(call opt,--out,$(ZOO_OUT))

test: venv js
	$(PY) -m pytest -q --durations=12 tests -m "not long"

# The checks that take more than a few minutes each (plus-m-416's --quantize auto): a step of .ci/run of its own.
test-long: venv js
	$(PY) -m pytest -q --durations=12 tests -m long

test-fast: venv
	$(PY) -m pytest -q tests -m "not slow and not long"

clean:
	rm -rf artifacts test-output
