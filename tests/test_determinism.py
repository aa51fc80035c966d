"""Byte-identical Verilog across processes: every registered block's default Verilog hashes the
same in two fresh interpreters with different string-hash seeds (``PYTHONHASHSEED``), so no
set/dict iteration order or object id leaks into the output. ``tests/test_lint.py`` checks the
same within one process, which cannot see hash-seed dependence."""

import hashlib
import json
import os
import subprocess
import sys

from sparsehw import registry
from sparsehw.hw.export import to_verilog

_HASH_ALL = """
import hashlib, json
from sparsehw import registry
from sparsehw.hw.export import to_verilog
out = {}
for name, block in sorted(registry.all_blocks().items()):
    verilog = to_verilog(block.build(**block.defaults()), name)
    out[name] = hashlib.sha256(verilog.encode()).hexdigest()
print(json.dumps(out))
"""


def _hashes_in_fresh_process(hash_seed):
    env = dict(os.environ, PYTHONHASHSEED=str(hash_seed), AMARANTH_USE_YOSYS="builtin")
    done = subprocess.run([sys.executable, "-c", _HASH_ALL], env=env, capture_output=True,
                          text=True, timeout=600, check=True)
    return json.loads(done.stdout)


def test_verilog_identical_across_processes_and_hash_seeds():
    first = _hashes_in_fresh_process(1)
    second = _hashes_in_fresh_process(2)
    assert set(first) == set(registry.all_blocks())
    differ = sorted(name for name in first if first[name] != second[name])
    assert not differ, f"Verilog depends on PYTHONHASHSEED for: {differ}"
    # ...and equal to this process's output (a third, unrelated hash seed).
    name = "spu"
    block = registry.all_blocks()[name]
    here = hashlib.sha256(to_verilog(block.build(**block.defaults()), name).encode()).hexdigest()
    assert first[name] == here
