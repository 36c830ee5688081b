# geoledger: two commands take a fresh clone to a report (`make run`) or a green suite (`make test`).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
CASSANDRA_DCS ?= changchun,beijing,shanghai
PYTEST_ARGS ?= --durations=20

.PHONY: run test test-fast install lint bench cassandra-start cassandra-stop clean

$(STAMP): pyproject.toml setup.py $(wildcard cext/*.pyx cext/*.pxd cext/*.pxi)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(VENV)/bin/geoledger simulate baseline --out runs/baseline

# The three-datacentre Cassandra (tests/test_cassandra_datacentres.py) starts in the
# background (its nodes take 30-60 s on two cores) while ruff, mypy and the first tests
# run; the tests that need it wait for it (GEOLEDGER_DCS_STARTING names the file the start
# writes its exit status to, its output beside it in .log). Nodes already running are used
# as they are; at the end this run stops the nodes it started (`--record`), nothing else.
test: install
	scripts/chromium install
	PYTHON=$(PY) scripts/cassandra start
	@record=$$(mktemp -t geoledger-dcs-started.XXXXXX); status=$$(mktemp -u -t geoledger-dcs-status.XXXXXX); \
	{ PYTHON=$(PY) scripts/cassandra start --dcs $(CASSANDRA_DCS) --record $$record >$$status.log 2>&1; \
	  echo $$? >$$status.tmp; mv $$status.tmp $$status; } & dcs=$$!; \
	trap 'wait $$dcs; scripts/cassandra stop --recorded $$record; rm -f $$status $$status.log' EXIT; \
	set -x; \
	$(VENV)/bin/ruff check . && \
	$(VENV)/bin/mypy ledger cext geoledger bench load replication region chaos simulator && \
	GEOLEDGER_DCS_STARTING=$$status $(PY) -m pytest -q $(PYTEST_ARGS)

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
