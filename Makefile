# One-line wrappers around the `tonghop` command. Every target sets up .venv/ first (once), quietly:
# one line says what is happening, the detail goes to .venv/install.log (its end is shown on failure).
# As root on Debian (CI) it installs python3-venv when Python lacks it.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
LOG    := $(VENV)/install.log
PERIOD ?= 2020-H1
N      ?= 1000
# The inbox `make consolidate` reads: INBOX=... when given; else inbox/<period>/ once it holds a
# spreadsheet; else the shipped samples of the period (and tonghop then says loudly that they are samples).
INBOX  ?= $(shell if find "inbox/$(PERIOD)" -type f \( -iname '*.xls*' -o -iname '*.ods' \) 2>/dev/null \
            | grep -q .; then echo "inbox/$(PERIOD)"; elif [ -d "samples/$(PERIOD)" ]; \
            then echo "samples/$(PERIOD)"; else echo "inbox/$(PERIOD)"; fi)

.DEFAULT_GOAL := help
.PHONY: help install templates samples consolidate test test-fast lint bench soffice mailservers fetch send clean

help:
	@echo "make consolidate                       tổng hợp kỳ $(PERIOD) (hộp thư inbox/$(PERIOD)/, chưa có thì tệp mẫu)"
	@echo "make consolidate PERIOD=2020-H2 INBOX=thư-mục   tổng hợp kỳ khác, hộp thư khác"
	@echo "make templates [PERIOD=...]            tạo mẫu báo cáo vào input_templates/<kỳ>/"
	@echo "make fetch | send [SEND=1]             nhận báo cáo từ hộp thư | viết (gửi) thư phản hồi"
	@echo "make test | test-fast | lint | bench   (cho người phát triển)"

$(STAMP): pyproject.toml
	@echo "Đang cài đặt tonghop vào $(VENV)/, khoảng 1 phút… (chi tiết: $(LOG))"
	@mkdir -p $(VENV)
	@( set -e; test -x $(PY) || python3 -m venv $(VENV) || { [ "$$(id -u)" = 0 ] && command -v apt-get && \
	     apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv && \
	     python3 -m venv $(VENV); }; \
	   $(PY) -m pip install --upgrade pip; \
	   $(PY) -m pip install -e '.[test]' ) > $(LOG) 2>&1 || \
	 { echo "Cài đặt không thành công. Cuối nhật ký $(LOG):"; tail -n 25 $(LOG); exit 1; }
	@touch $(STAMP)
	@echo "Đã cài đặt xong."

install: $(STAMP)

templates: install
	@$(VENV)/bin/tonghop templates --period $(PERIOD)

samples: install
	$(PY) samples/sample_inbox.py --period $(PERIOD) --out samples/$(PERIOD)

consolidate: install
	@case "$(INBOX)" in samples/*) echo "Chưa có tệp nào trong inbox/$(PERIOD)/: chạy thử với hộp thư mẫu $(INBOX)/.";; esac
	@$(VENV)/bin/tonghop consolidate --period $(PERIOD) --inbox "$(INBOX)" --out output

# LibreOffice is the second spreadsheet program the tests check against; install it where possible
# (root on Debian, as in CI), quietly, into its own log.
soffice: install
	@command -v soffice >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Đang cài LibreOffice để kiểm tra, khoảng 1–2 phút… (chi tiết: $(VENV)/soffice-install.log)"; \
	    ( apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libreoffice-calc-nogui ) \
	      > $(VENV)/soffice-install.log 2>&1 || { echo "Không cài được LibreOffice: các bài kiểm tra cần nó \
	sẽ bị bỏ qua. Cuối nhật ký:"; tail -n 15 $(VENV)/soffice-install.log; }; \
	  else echo "Chưa có LibreOffice (soffice): các bài kiểm tra cần nó sẽ bị bỏ qua."; fi; }

# Dovecot is the IMAP server the mail tests start on loopback; install it where possible (RUNLEVEL=1:
# the package's own system-wide service is not started).
mailservers: install
	@{ command -v dovecot || test -x /usr/sbin/dovecot; } >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Đang cài máy chủ thư Dovecot để kiểm tra… (chi tiết: $(VENV)/dovecot-install.log)"; \
	    ( apt-get update -qq && RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends dovecot-imapd openssl ) > $(VENV)/dovecot-install.log 2>&1 || { echo "Không cài \
	được Dovecot: các bài kiểm tra nhận thư sẽ bị bỏ qua. Cuối nhật ký:"; tail -n 15 $(VENV)/dovecot-install.log; }; \
	  else echo "Chưa có Dovecot: các bài kiểm tra nhận thư sẽ bị bỏ qua."; fi; }

# Mail (settings in tonghop.toml, see tonghop.example.toml). `make send` only writes the letters for
# review; `make send SEND=1` sends them.
fetch: install
	@$(VENV)/bin/tonghop fetch --period $(PERIOD)

send: install
	@$(VENV)/bin/tonghop send --period $(PERIOD) $(if $(SEND),--send)

test: install soffice mailservers
	$(PY) -m pytest -q

# everything but whole-job end-to-end runs, the benchmark's subprocess (`slow`) and LibreOffice (`soffice`)
test-fast: install
	$(PY) -m pytest -q -m "not slow and not soffice"

lint: install
	$(VENV)/bin/ruff check .

bench: install
	$(PY) bench/bench.py --n $(N)

# the run outputs go; the history of earlier runs (output/lich-su.sqlite) stays
clean:
	find output -mindepth 1 -maxdepth 1 ! -name lich-su.sqlite ! -name .gitkeep -exec rm -rf {} +
	rm -rf bench/cache
