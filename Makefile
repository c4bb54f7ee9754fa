# convoforge: the README's two commands are `make run` and `make test`; both set up what they need.
VENV ?= .venv
PY := $(VENV)/bin/python
# llama.cpp built for any x86-64 with AVX2: a native build segfaults on CPUs that report AMX.
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	-DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF -DGGML_OPENMP=OFF
CONFIG ?= examples/tiny.toml

.PHONY: install run test lint clean-data browser

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@# --no-binary + --no-cache-dir: never reuse a wheel someone built with native flags.
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PY) -m pip install --no-cache-dir \
		--no-binary llama-cpp-python "llama-cpp-python[server]==0.3.36"
	$(PY) -m pip install --quiet -e ".[embedded,dev]"
	touch $@

run: install
	$(VENV)/bin/convoforge run --config $(CONFIG)

# The Prefect UI test drives Debian's chromium (Playwright never downloads a browser here).
browser:
	@command -v chromium >/dev/null || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium; }

test: install browser
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean-data:
	rm -rf data
