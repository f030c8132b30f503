# Careline 12349 — the two commands are `make run` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= $(shell command -v python3.11 || command -v python3)
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint types pytest system-deps messages clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || \
		{ apt-get update && apt-get install -y python3-venv python3-pip; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# Set up and run with the embedded defaults and the demo floor on http://127.0.0.1:8080
run: $(STAMP)
	$(BIN)/careline serve --demo

# What the tests need from the system besides Python packages (installed when missing):
# Chromium for the console tests (Playwright drives it) and a CJK font, so that screenshots
# show the Chinese an operator reads instead of empty boxes.
CHROMIUM ?= $(or $(CARELINE_CHROMIUM),/usr/bin/chromium)
system-deps:
	@missing=""; \
	[ -x "$(CHROMIUM)" ] || missing="$$missing chromium"; \
	fc-list 2>/dev/null | grep -qi "Noto Sans CJK" || missing="$$missing fonts-noto-cjk"; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing"; \
		apt-get update && apt-get install -y --no-install-recommends $$missing; \
	fi

# Re-read the console's texts into its catalogue; translate the new empty msgstr entries.
messages: $(STAMP)
	$(BIN)/pybabel extract -F dispatch/console/babel.cfg -k _N --no-location --sort-output \
		-o var/console.pot .
	$(BIN)/pybabel update -D console -i var/console.pot -d dispatch/console/locale \
		-w 110 --ignore-obsolete --ignore-pot-creation-date -N

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) system-deps
	PYTHONASYNCIODEBUG=1 $(BIN)/pytest

# Set up and run everything CI runs: lint, types, the whole test suite.
test: lint types pytest

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
