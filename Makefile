# geoledger: two commands take a fresh clone to a report (`make run`) or a green suite (`make test`).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run test test-fast install lint bench cassandra-start cassandra-stop clean

$(STAMP): pyproject.toml setup.py $(wildcard cext/*.pyx cext/*.pxd cext/*.pxi)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(VENV)/bin/geoledger simulate baseline --out runs/baseline

test: install
	scripts/chromium install
	PYTHON=$(PY) scripts/cassandra start
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy ledger cext geoledger bench load replication region chaos simulator
	$(PY) -m pytest -q

# The edit-test loop: no Ray, no Cassandra, no load processes, no long simulations (< 1 min).
test-fast: install
	$(PY) -m pytest -q -m "not ray and not cassandra and not load and not slow"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy ledger cext geoledger bench load replication region chaos simulator

bench: install
	$(VENV)/bin/geoledger bench

cassandra-start:
	PYTHON=$(PY) scripts/cassandra start

cassandra-stop:
	scripts/cassandra stop

clean:
	rm -rf $(VENV) build cext/*.c cext/*.so *.egg-info
