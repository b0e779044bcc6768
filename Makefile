# Two commands for a newcomer: `make demo` and `make test`. Both install first, once.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test test-llamacpp lint format bench bench-quick clean

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
	$(VENV)/bin/lightningllm test --ckpt_path logs/demo/checkpoints/last.ckpt

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -q -n 2 --dist loadfile

# Opt-in: llama.cpp itself runs our GGUF exports. Installing llama-cpp-python compiles llama.cpp
# (about 15 minutes on 2 CPU cores, once).
test-llamacpp: $(STAMP)
	$(PY) -c "import llama_cpp" 2>/dev/null || $(PY) -m pip install -q -c constraints.txt llama-cpp-python
	$(PY) -m pytest -q -m llamacpp tests/interop

# Benchmarks print their figures; BENCHMARKS.md records them with the machine and the command.
# bench-quick takes about 4 minutes on 2 CPU cores; bench a little over an hour.
bench-quick: $(STAMP)
	$(PY) benchmarks/startup.py --quick
	$(PY) benchmarks/data_prep.py --quick
	$(PY) benchmarks/throughput.py --quick
	$(PY) benchmarks/profile_step.py --quick
	$(PY) benchmarks/generation.py --quick
	$(PY) benchmarks/memory.py --quick
	$(PY) benchmarks/quality.py --quick

bench: $(STAMP)
	$(PY) benchmarks/startup.py
	$(PY) benchmarks/data_prep.py
	$(PY) benchmarks/throughput.py --shapes baby demo --repeats 3 --steps 100
	$(PY) benchmarks/throughput.py --shapes small --repeats 2 --steps 25 --warmup 5
	$(PY) benchmarks/throughput.py --compile --shapes baby demo --repeats 2 --steps 100
	$(PY) benchmarks/throughput.py --compile --shapes small --repeats 1 --steps 25 --warmup 5
	$(PY) benchmarks/profile_step.py --shape baby
	$(PY) benchmarks/profile_step.py --shape small --steps 5
	$(PY) benchmarks/generation.py
	$(PY) benchmarks/memory.py
	$(PY) benchmarks/quality.py --shakespeare-config configs/shakespeare-bpe.yaml --only shakespeare
	$(PY) benchmarks/quality.py --only reasoning --minutes 1 2 5 10

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) logs/* .cache
