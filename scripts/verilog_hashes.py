"""Hash the generated Verilog of every block at every design point of the report grid.

Used to prove that a refactoring leaves the RTL byte-identical: run it before and after and
compare the outputs (``python scripts/verilog_hashes.py > before.txt``). Covers the quick and the
full grid of ``sparsehw report``, every block's defaults and its ``perf`` reference point, with
both the simulation top (``build``) and the synthesis top (``synth_build``) where they differ.
A design point that fails to build prints an ``ERROR`` line (and the exit status is 1) instead of
hiding the points after it.

Known differences from ``verilog_hashes.before.txt`` (taken before issue 10's refactoring):

- ``spu``: the output port was renamed ``out`` -> ``o`` (``out__*`` -> ``o__*`` in the Verilog);
- ``ring``: the router's sideband ports became ``wiring.Signature`` interfaces and the hold and
  fairness logic a ``RingArbiter`` per direction, which renames the router module's ports and
  adds two modules; ``scripts/ring_equivalence.py`` proves the new ring equivalent to the old
  one with Yosys. Every other block is byte-identical.
"""

import hashlib
import json
import sys


def _imports():
    try:                                    # the layered layout
        from sparsehw.experiments import sections
        from sparsehw.hw.export import to_verilog
    except ImportError:                     # the layout before it (to hash an old checkout)
        from synth import sections
        from hw.export import to_verilog
    from sparsehw import registry
    return sections, to_verilog, registry


def design_points(sections, registry):
    blocks = registry.all_blocks()
    seen = set()
    for block in blocks.values():
        candidates = [{}, dict(block.perf_defaults or {})]
        for section in sections.SECTIONS:
            for quick in (True, False):
                for point in section.points(quick):
                    if point["block"] == block.name:
                        candidates.append(dict(point.get("params", {})))
        for params in candidates:
            resolved = registry.resolve_params(block, params)
            key = (block.name, json.dumps(resolved, sort_keys=True))
            if key not in seen:
                seen.add(key)
                yield block, resolved


def main():
    sections, to_verilog, registry = _imports()
    failed = 0
    for block, params in design_points(sections, registry):
        tops = [("build", block.build)]
        if block.synth_build is not None:
            tops.append(("synth_build", block.synth_build))
        for what, builder in tops:
            point = f"{block.name} {what} {json.dumps(params, sort_keys=True)}"
            try:
                verilog = to_verilog(builder(**params), block.name)
            except Exception as error:     # report it and go on with the other points
                failed += 1
                print(f"ERROR {point} {type(error).__name__}: {error}")
                continue
            print(f"{point} {hashlib.sha256(verilog.encode()).hexdigest()}")
            sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
