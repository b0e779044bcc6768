# Two commands for a newcomer: `make demo` and `make test`. Both install first, once.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test lint format bench bench-quick clean

install: $(STAMP)

# Re-runs only when the dependency pins change, so a second `make` does not reinstall.
$(STAMP): pyproject.toml constraints.txt scripts/check_env.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	$(PY) scripts/check_env.py
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/lightningllm fit --config configs/demo.yaml
	$(VENV)/bin/lightningllm test --config configs/demo.yaml --ckpt_path logs/demo/checkpoints/last.ckpt

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -q

# Benchmarks write their figures to stdout; BENCHMARKS.md records them with the machine.
bench-quick: $(STAMP)
	$(PY) benchmarks/data_prep.py --quick

bench: $(STAMP)
	$(PY) benchmarks/data_prep.py

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) logs/* .cache
