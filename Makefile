# Storeloop — two commands: `make run` and `make test`. Everything else is optional.
SHELL := /bin/bash
UV_VERSION := 0.13.8
UV := .tools/bin/uv
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := python3
export UV_LINK_MODE := copy
# Bytecode written at install: every process (worker, scheduler, CLI, the tests' subprocesses) then
# starts in ~0.9 s instead of ~2.2 s compiling Django, also where PYTHONDONTWRITEBYTECODE is set.
export UV_COMPILE_BYTECODE := 1

.PHONY: run test test-postgres chromium lint typecheck check bench-ingest clean help

help:
	@echo "make run    - install, migrate, start web + worker + scheduler (+ demo shop) on SQLite"
	@echo "make test   - install and run the whole test suite"
	@echo "make lint / typecheck / check (all) / chromium (for browser tests) / bench-ingest / clean"

# uv itself comes from PyPI into a private venv, so a machine with only python3 works.
$(UV):
	python3 -m venv .tools
	.tools/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

.venv/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --quiet
	@touch $@

run: .venv/.synced
	exec .venv/bin/storeloop run

# Browser tests drive Debian's Chromium through Playwright: `playwright install` cannot download its
# own browsers on these machines. Installed once (needs root); nothing happens when it is there.
CHROMIUM := /usr/bin/chromium
chromium:
	@test -x $(CHROMIUM) || { \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -qq --no-install-recommends chromium \
	  || { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; }; }

test: .venv/.synced chromium
	.venv/bin/pytest

test-postgres: .venv/.synced chromium
	STORELOOP_DATABASE_URL=$${STORELOOP_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test} .venv/bin/pytest

lint: .venv/.synced
	.venv/bin/ruff check src tests bench
	.venv/bin/ruff format --check src tests bench
	.venv/bin/lint-imports

typecheck: .venv/.synced
	.venv/bin/mypy

check: test lint typecheck

bench-ingest: .venv/.synced
	.venv/bin/python bench/webhook_ingest.py --quick

clean:
	rm -rf .venv .tools var/test.sqlite3*
