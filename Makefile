# One-line wrappers around the `tonghop` command. Every target sets up .venv/ first (once).
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PERIOD ?= 2020-H1
N      ?= 1000

.PHONY: install templates samples consolidate test lint bench soffice mailservers fetch send clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

templates: install
	$(VENV)/bin/tonghop templates --period $(PERIOD)

samples: install
	$(PY) -m pipeline.samples --period $(PERIOD) --out inbox

consolidate: install
	$(VENV)/bin/tonghop consolidate --inbox inbox --out output --period $(PERIOD)

# LibreOffice is the second spreadsheet program the tests check against; install it where possible.
soffice:
	@command -v soffice >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libreoffice-calc-nogui) \
	  >/dev/null 2>&1; } || echo "LibreOffice not installed: its tests will be skipped"

# Dovecot is the IMAP server the mail tests start on loopback; install it where possible (RUNLEVEL=1:
# the package's own system-wide service is not started).
mailservers:
	@{ command -v dovecot || test -x /usr/sbin/dovecot; } >/dev/null || { [ "$$(id -u)" = 0 ] && \
	  command -v apt-get >/dev/null && echo "Installing the IMAP server for the mail tests (dovecot-imapd)..." && \
	  (apt-get update -qq && RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	  --no-install-recommends dovecot-imapd openssl) >/dev/null 2>&1; } || \
	  echo "Dovecot not installed: the mail fetch tests will be skipped"

# Mail (settings in tonghop.toml, see tonghop.example.toml). `make send` only writes the letters for
# review; `make send SEND=1` sends them.
fetch: install
	$(VENV)/bin/tonghop fetch --period $(PERIOD)

send: install
	$(VENV)/bin/tonghop send --period $(PERIOD) $(if $(SEND),--send)

test: install soffice mailservers
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check .

bench: install
	$(PY) bench/bench.py --n $(N)

clean:
	rm -rf output/* bench/cache
