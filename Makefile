# The two commands a newcomer needs: `make serve` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test lint browser-deps screenshots bench-accuracy bench-speed bench-index bench-clusters clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,bench]'
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/medialayer serve --host $${HOST:-127.0.0.1} --port $${PORT:-8080}

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

# The browser tests drive Debian's chromium; this installs it (apt) when it is missing.
browser-deps:
	bash .ci/browser-deps

test: $(STAMP) browser-deps
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy src/
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

# The review UI's screenshots in docs/img (shown in docs/review.md), from the browser test.
screenshots: $(STAMP) browser-deps
	MEDIALAYER_SCREENSHOTS=docs/img $(BIN)/python -m pytest tests/test_browser.py -q

bench-accuracy: $(STAMP)
	$(BIN)/python bench/accuracy.py --corpus $${CORPUS:-eval-data/image-dev} --out $${OUT:-eval-data/results.csv}

bench-speed: $(STAMP)
	$(BIN)/python bench/speed.py --corpus $${CORPUS:-eval-data/image-dev}

bench-index: $(STAMP)
	$(BIN)/python bench/index.py

bench-clusters: $(STAMP)
	$(BIN)/python bench/clusters.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
