import os

# Verilog export must use the pinned builtin Yosys, in every test process.
os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
