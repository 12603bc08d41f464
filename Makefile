# The README's two commands: `make demo` and `make test`. Both create .venv when missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast bench lint clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# Dev environment: exactly this torch/torchvision pair (installs from this machine's disk).
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/selfsup train

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/python -m benchmarks.render --check
	$(BIN)/pytest -q --durations=20

# The unit tests: everything but end-to-end training and process launches (the `slow` mark).
test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow" --durations=10

# Every speed benchmark (minutes each), then the tables of docs/results/ from their results.
bench: $(STAMP)
	for f in benchmarks/speed/bench_*.py; do $(BIN)/python -m benchmarks.speed.$$(basename $$f .py) || exit 1; done
	$(BIN)/python -m benchmarks.render

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) runs .pytest_cache
