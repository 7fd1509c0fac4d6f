# mpt developer entry points. `make demo` and `make test` work on a fresh clone.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# The out-of-tree example plugin is installed as a user installs a third-party package: from its
# folder, not editable (reinstalled when any of its files changes).
EXAMPLE := examples/mpt-image
EXAMPLE_STAMP := $(VENV)/.example-installed
DISTS   := -e core -e cli -e plugins/pointcloud -e plugins/timeseries -e plugins/video -e plugins/audio -e plugins/satellite -e plugins/medical
DEV     := pytest pytest-xdist hypothesis ruff mypy tensorboard setuptools
PYPROJECTS := core/pyproject.toml cli/pyproject.toml $(wildcard plugins/*/pyproject.toml)
JOBS    ?= 2

.PHONY: install demo test test-slow test-all lint bench bench-hf clean syslibs

install: syslibs $(STAMP) $(EXAMPLE_STAMP)

# open3d needs libusb-1.0 at import time.
syslibs:
	@if ! ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing libusb-1.0-0 (needed by open3d)"; \
	    (apt-get install -y -qq libusb-1.0-0 >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq libusb-1.0-0 >/dev/null)); \
	  else \
	    echo "WARNING: libusb-1.0 is missing and open3d (point clouds) will not import."; \
	    echo "         Install it as root: apt-get install -y libusb-1.0-0"; \
	  fi; \
	fi

$(STAMP): $(PYPROJECTS) constraints-dev.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints-dev.txt torch torchvision torchaudio
	$(BIN)/pip install -q -c constraints-dev.txt $(DISTS) $(DEV)
	touch $(STAMP)

$(EXAMPLE_STAMP): $(STAMP) $(shell find $(EXAMPLE) -type f -not -path '*/__pycache__/*' 2>/dev/null)
	$(BIN)/pip install -q --no-deps --no-build-isolation ./$(EXAMPLE)
	rm -rf $(EXAMPLE)/build $(EXAMPLE)/src/*.egg-info
	touch $(EXAMPLE_STAMP)

demo: install
	$(BIN)/mpt pretrain --modality pointcloud --out runs/demo

test: install
	$(BIN)/python -m pytest -n $(JOBS) -q

test-slow: install
	$(BIN)/python -m pytest -n $(JOBS) -q -m slow

test-all: install
	$(BIN)/python -m pytest -n $(JOBS) -q -m "slow or not slow"

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy core/src cli/src plugins/pointcloud/src plugins/timeseries/src plugins/video/src plugins/audio/src plugins/satellite/src plugins/medical/src $(EXAMPLE)/src

bench: install
	$(BIN)/python benchmarks/pretrain_throughput.py --modality pointcloud
	$(BIN)/python benchmarks/pretrain_throughput.py --modality timeseries

# side-by-side against the Hugging Face reference implementations (transformers: benchmark-only)
bench-hf: install
	$(BIN)/pip install -q -c constraints-dev.txt transformers
	$(BIN)/python benchmarks/pretrain_throughput.py --modality timeseries --recipe patchtst --against hf \
	  --data ../shared/data/timeseries/Daphnet_S06R02E0.csv --batch 32 --set tokenizer.patch=16 \
	  --set tokenizer.stride=16 --set data.stride=64 \
	  --set 'data.columns=[ankle_horiz_fwd,ankle_vert,ankle_horiz_lateral,leg_horiz_fwd,leg_vert,leg_horiz_lateral,trunk_horiz_fwd]'

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis
