# geoledger: two commands take a fresh clone to a report (`make run`) or a green suite (`make test`).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
CASSANDRA_DCS ?= changchun,beijing,shanghai

.PHONY: run test test-fast install lint bench cassandra-start cassandra-stop clean

$(STAMP): pyproject.toml setup.py $(wildcard cext/*.pyx cext/*.pxd)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(VENV)/bin/geoledger simulate baseline --out runs/baseline

# The three-datacentre Cassandra (tests/test_cassandra_datacentres.py) starts in the
# background while ruff and mypy run (its nodes take about a minute on two cores), and
# pytest waits for it. Nodes already running are used as they are; at the end this run
# stops the nodes it started (`--record`), and nothing else.
test: install
	scripts/chromium install
	PYTHON=$(PY) scripts/cassandra start
	@record=$$(mktemp -t geoledger-dcs-started.XXXXXX); log=$$(mktemp -t geoledger-dcs-start.XXXXXX); \
	PYTHON=$(PY) scripts/cassandra start --dcs $(CASSANDRA_DCS) --record $$record >$$log 2>&1 & dcs=$$!; \
	trap 'wait $$dcs 2>/dev/null; scripts/cassandra stop --recorded $$record; rm -f $$log' EXIT; \
	set -x; \
	$(VENV)/bin/ruff check . && \
	$(VENV)/bin/mypy ledger cext geoledger bench load replication region chaos simulator && \
	{ wait $$dcs || { cat $$log; echo "scripts/cassandra start --dcs $(CASSANDRA_DCS) failed" >&2; exit 1; }; } && \
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
