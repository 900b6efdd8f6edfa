# make demo   - create .venv, install evalrun, run the offline smoke evaluation (tiny model)
# make test   - create .venv if needed and run the test suite (offline)
# make browser - install Debian's chromium for the gallery's headless-browser test (root)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test browser

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torchvision (for torch-fidelity's Inception) must match torch: install the pair first.
	$(PY) -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	HF_HUB_OFFLINE=1 $(PY) -m evalrun

test: install
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

browser:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)
