# The two commands of the README: `make demo` and `make test`. Both set up the virtualenv first.
VENV ?= .venv
PY := $(VENV)/bin/python
UV := python3 -m uv

.PHONY: setup system demo test lint lock wheel-check
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

setup: $(VENV)/.installed

# Bytecode compiled once at install (~45 s): every later process starts faster, and with
# PYTHONDONTWRITEBYTECODE set Python would otherwise compile on every start (a demo: 55 s → 26 s).
$(VENV)/.installed: requirements.lock setup.cfg
	python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	$(UV) venv --allow-existing --python 3.11 $(VENV)
	$(UV) pip install --quiet --compile-bytecode --python $(PY) -r requirements.lock
	$(UV) pip install --quiet --python $(PY) --no-deps -e .
	touch $@

demo: setup
	$(VENV)/bin/unitfusion demo

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Debian packages the tests use: Chromium (run report, unit profiles and township packs in a headless
# browser), a CJK font for the Chinese of those pages (fonts-noto-cjk: "Noto Sans CJK SC"), docker-compose
# (static check of docker/compose.yaml; no Docker engine is needed).
NOTO_CJK := /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc
system:
	@command -v chromium >/dev/null && command -v docker-compose >/dev/null && test -f $(NOTO_CJK) || \
		($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends chromium docker-compose fonts-noto-cjk)

# The package as a user installs it: the wheel in a clean virtualenv without extras (no Airflow, no dev tools),
# running a small demo from another directory.
wheel-check: setup
	UV="$(UV)" .ci/wheel-check

test: lint system wheel-check
	$(PY) -m pytest -q

# Re-pin after changing dependencies in setup.cfg.
lock:
	$(UV) pip compile setup.cfg --extra airflow --extra dev --python-version 3.11 -o requirements.lock
