# The study's entry points. `make reproduce` and `make test` work on a fresh machine:
# both create .venv/ with the pinned CPU stack first if it is missing.
PROFILE ?= tiny
SEED ?= 0
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: install reproduce book test bench bench-gpu clean

install: $(STAMP)

$(STAMP): requirements.txt constraints.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -c constraints.txt -r requirements.txt
	$(PIP) install -q -c constraints.txt --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 > /dev/null
	touch $(STAMP)

reproduce: install
	$(PY) -m poseguard_lib.runner reproduce --profile $(PROFILE) --seed $(SEED)

book: install
	$(PY) -m poseguard_lib.runner book --profile $(PROFILE)

test: install
	$(PY) -m pytest -q

bench: install
	for script in benchmarks/bench_*.py; do $(PY) $$script || exit 1; done

# On a machine with a GPU, in its own CUDA environment (environment.yml): `python` is that one's.
bench-gpu:
	bash benchmarks/gpu.sh

clean:
	rm -rf _build book/tiny results/tiny
