# The two commands a newcomer needs: `make serve` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test lint browser-deps screenshots bench-accuracy bench-speed bench-index \
	bench-clusters bench-audio-deps bench-audio bench-audio-latency bench-video-peers bench-video \
	clean

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

# Chromaprint's fpcalc, the audio peer (a Debian package; the tests never need it).
bench-audio-deps:
	command -v fpcalc >/dev/null || (apt-get update -q && apt-get install -y -q libchromaprint-tools)

bench-audio: $(STAMP) bench-audio-deps
	$(BIN)/python bench/audio_accuracy.py --corpus $${CORPUS:-eval-data/audio-dev} --out $${OUT:-eval-data/audio-results.csv} --peers

bench-audio-latency: $(STAMP)
	$(BIN)/python bench/audio_latency.py --corpus $${CORPUS:-eval-data/audio-dev} --hours $${HOURS:-1000}

# The video peers: vpdq (pip) compiles against Debian's FFmpeg development packages.
bench-video-peers: $(STAMP)
	command -v pkg-config >/dev/null && pkg-config --exists libavcodec libavformat libswscale \
	  || (apt-get update && apt-get install -y --no-install-recommends pkg-config g++ cmake \
	      libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libavdevice-dev)
	$(BIN)/python -m pip install -q vpdq

bench-video: bench-video-peers
	$(BIN)/python bench/video_accuracy.py --corpus $${CORPUS:-eval-data/video-dev} --out $${OUT:-eval-data/video-results.csv}

bench-clusters: $(STAMP)
	$(BIN)/python bench/clusters.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
