# Two commands set up a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO_OUT ?= demo
# The CPU wheels are enough everywhere tests run; a GPU user installs torch first.
PIP_INSTALL := $(BIN)/pip install --quiet --disable-pip-version-check

.PHONY: demo test venv clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/activate pyproject.toml
	$(PIP_INSTALL) --upgrade pip setuptools wheel
	$(PIP_INSTALL) -e ".[test]"
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(BIN)/rtseg demo --out $(DEMO_OUT)

# the ten slowest tests in every log: CI must stay under 15 minutes on a 2-core CPU
PYTEST_ARGS ?= --durations=10

test: venv
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(DEMO_OUT) *.egg-info
