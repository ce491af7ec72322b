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

# CI must stay under 15 minutes on a 2-core CPU: the suite runs in TEST_WORKERS processes of
# one thread each (pytest-xdist; a test file stays in one process, so its module fixtures are
# built once), and every log lists the ten slowest tests. TEST_WORKERS=0 runs it in this process.
TEST_WORKERS ?= 2
PYTEST_ARGS ?= --durations=10

test: venv
	$(BIN)/python -m pytest -q -p no:cacheprovider $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile) $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(DEMO_OUT) *.egg-info
