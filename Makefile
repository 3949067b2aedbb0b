# The two commands of the README: `make demo` and `make test`. Both set up the virtualenv first.
VENV ?= .venv
PY := $(VENV)/bin/python
UV := python3 -m uv

.PHONY: setup demo test lint lock

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.lock setup.cfg
	python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	$(UV) venv --allow-existing --python 3.11 $(VENV)
	$(UV) pip install --quiet --python $(PY) -r requirements.lock
	$(UV) pip install --quiet --python $(PY) --no-deps -e .
	touch $@

demo: setup
	$(VENV)/bin/unitfusion demo

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(PY) -m pytest -q

# Re-pin after changing dependencies in setup.cfg.
lock:
	$(UV) pip compile setup.cfg --extra airflow --extra dev --python-version 3.11 -o requirements.lock
