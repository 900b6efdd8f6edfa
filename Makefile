# make demo        - create .venv, install evalrun, run the offline smoke evaluation (tiny model)
# make test        - create .venv if needed and run the whole test suite (offline, CPU, under 5 minutes
#                    on 2 cores: one pytest-xdist worker per core, up to TEST_WORKERS=4)
# make test-fast   - the same without the slow end-to-end tests (-m "not slow")
# make system-deps - Debian packages some tests use: chromium (gallery), pdflatex + siunitx (LaTeX tables); root
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Test workers: one per core (each runs one BLAS thread), at most 4 (each holds its own tiny models).
TEST_WORKERS ?= $(shell nproc 2>/dev/null | awk '{print ($$1 < 4 ? $$1 : 4)}')
PYTEST := $(PY) -m pytest -q -n $(or $(TEST_WORKERS),1) --dist loadfile

.PHONY: install demo test test-fast system-deps browser

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
	HF_HUB_OFFLINE=1 $(PYTEST)

test-fast: install
	HF_HUB_OFFLINE=1 $(PYTEST) -m "not slow"

system-deps:
	command -v chromium >/dev/null && command -v pdflatex >/dev/null || ( apt-get update -qq && \
	  apt-get install -y -qq --no-install-recommends chromium texlive-latex-base texlive-latex-recommended \
	  texlive-science >/dev/null )

browser: system-deps
