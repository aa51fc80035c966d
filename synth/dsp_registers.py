"""Pack the registers around an ECP5 multiplier into the ``MULT18X18D`` itself.

``synth_ecp5`` maps every multiplier to a combinational ``MULT18X18D`` (all ``REG_*_CLK =
"NONE"``, ``techlibs/lattice/dsp_map_18x18.v``) and leaves the registers in front of and behind
it in the fabric. A path ``fabric FF -> DSP -> fabric FF`` then carries two routing hops and the
whole multiplier (nextpnr's ``MULT18X18D_REGS_NONE`` timing). The DSP has its own input and
output registers; vendor tools move such registers into the block, and so does this pass, on
the flattened JSON netlist between Yosys and nextpnr. nextpnr then times the DSP with its
registered model (``MULT18X18D_REGS_INPUT`` / ``_OUTPUT`` / ``_ALL``).

Rules (a register group is the A inputs, the B inputs or the P outputs of one DSP):

* **Inputs**: every connected pin of the operand is driven by a ``TRELLIS_FF`` whose ``Q`` net
  feeds only pins of this DSP and is not a port; pins tied to ``0``/``x`` are allowed (a register
  of a constant 0 is 0 after reset and after every load), a pin tied to ``1`` is not.
* **Outputs**: every used ``P`` bit feeds exactly one cell, a ``TRELLIS_FF`` on its ``DI``, and is
  not a port.
* The flip-flops of a group share their clock, clock enable and reset nets and are all plain:
  rising clock (``CLKMUX = "CLK"``), reset to 0 (``REGSET = "RESET"``), synchronous reset that
  overrides the enable (``SRMODE = "LSR_OVER_CE"``), no inverted enable or reset, ``GSR``
  disabled. The DSP gets ``RESETMODE = "SYNC"``, ``GSR = "DISABLED"``.
* A fabric FF resets even when its enable is low. Whether the DSP's synchronous reset needs its
  ``CE`` is not something we rely on: a group with both an enable and a reset gets the enable
  ``CE | RST`` (one ``LUT4`` per distinct pair, shared by every DSP that uses it), so the
  register resets in every cycle the FF would, with or without the DSP gating reset by ``CE``.
* The two operand registers move together or not at all: nextpnr has no timing model of a DSP
  with one input registered ("unsupported mixed input register modes"; it times it as if
  neither were), so a lone moved register would put the logic in front of it in series with
  the multiplier.
* A group that breaks a rule stays in the fabric (the DSP is left as it was for that group).
* DSPs are taken in name order, and each sees what moved before it: a flip-flop between two
  DSPs (one's product register, the other's operand register) moves into the first that takes
  it; one flip-flop feeding both operands (``x * x``) moves into both registers.

The packed FFs are removed: an input pin reads the FF's ``DI`` net, the FF's ``Q`` net is driven
by the DSP's ``P`` bit. Cycle behaviour is unchanged: a register moved, not added or removed.
"""

import json
from collections import defaultdict
from itertools import chain
from pathlib import Path


__all__ = ["pack_dsp_registers"]


#: ``TRELLIS_FF`` parameters a packable flip-flop must have (other than ``CEMUX``/``LSRMUX``):
#: name -> (required value, the cell's default when absent: Yosys leaves out ``SRMODE`` on a
#: flip-flop without reset).
_PLAIN_FF = {"CLKMUX": ("CLK", "CLK"), "REGSET": ("RESET", "RESET"),
             "SRMODE": ("LSR_OVER_CE", "LSR_OVER_CE"), "GSR": ("DISABLED", "ENABLED")}
#: ``LUT4`` truth table of ``Z = A | B`` (index ``D*8 + C*4 + B*2 + A``; ``C``, ``D`` unused).
_OR2_INIT = format(0xEEEE, "016b")
_GROUP_PREFIX = {"A": "REG_INPUTA", "B": "REG_INPUTB", "P": "REG_OUTPUT"}


def _param(cell, name):
    return str(cell["parameters"].get(name, "")).strip()


def _ff_control(cell):
    """``(clk, ce, rst)`` net ids of a plain flip-flop (``None``: no enable / no reset), or
    ``None`` when the flip-flop is not one this pass may move."""
    if cell["type"] != "TRELLIS_FF":
        return None
    if any((_param(cell, name) or default) != required
           for name, (required, default) in _PLAIN_FF.items()):
        return None
    if _param(cell, "LSRMODE") not in ("", "LSR"):     # "PRLD" loads M on reset
        return None
    conn = cell["connections"]
    clk = conn.get("CLK", [None])[0]
    if not isinstance(clk, int):
        return None
    cemux, lsrmux = _param(cell, "CEMUX"), _param(cell, "LSRMUX")
    if cemux == "CE":
        ce = conn.get("CE", ["1"])[0]
        ce = None if ce == "1" else ce
    elif cemux == "1":
        ce = None
    else:
        return None
    rst = conn.get("LSR", ["0"])[0] if lsrmux == "LSR" else "0"
    if lsrmux not in ("LSR", "") or rst == "1":
        return None
    rst = None if rst in ("0", "x") else rst
    if not all(net is None or isinstance(net, int) for net in (ce, rst)):
        return None
    return clk, ce, rst


class _Netlist:
    def __init__(self, module):
        self.module = module
        self.cells = module["cells"]
        self.driver = {}
        self.users = defaultdict(list)
        for name, cell in self.cells.items():
            for port, bits in cell["connections"].items():
                out = cell["port_directions"].get(port) == "output"
                for index, bit in enumerate(bits):
                    if isinstance(bit, int):
                        if out:
                            self.driver[bit] = (name, port)
                        else:
                            self.users[bit].append((name, port, index))
        self.port_bits = {bit for port in module["ports"].values() for bit in port["bits"]
                          if isinstance(bit, int)}
        # above every net id in use: a port or a named net may have neither driver nor user
        named = (bit for net in module["netnames"].values() for bit in net["bits"]
                 if isinstance(bit, int))
        self.next_net = 1 + max(chain(self.driver, self.users, self.port_bits, named, [1]))

    def new_net(self):
        self.next_net += 1
        return self.next_net - 1

    def move_pin(self, cell_name, pin, bit, output):
        """Connect ``pin`` of ``cell_name`` to net ``bit`` instead of its net now, keeping
        the driver and user maps current (a later DSP must see what moved before it)."""
        cell = self.cells[cell_name]
        old = cell["connections"].get(pin, [None])[0]
        if output:
            if self.driver.get(old) == (cell_name, pin):
                del self.driver[old]
            self.driver[bit] = (cell_name, pin)
        else:
            if isinstance(old, int):
                self.users[old] = [u for u in self.users[old] if u[:2] != (cell_name, pin)]
            if isinstance(bit, int):
                self.users[bit].append((cell_name, pin, 0))
        cell["connections"][pin] = [bit]
        cell["port_directions"][pin] = "output" if output else "input"

    def remove(self, cell_name):
        """Remove a cell and every mention of it in the driver and user maps."""
        for port, bits in self.cells.pop(cell_name)["connections"].items():
            for bit in bits:
                if not isinstance(bit, int):
                    continue
                if self.driver.get(bit) == (cell_name, port):
                    del self.driver[bit]
                self.users[bit] = [u for u in self.users[bit] if u[0] != cell_name]


def _input_group(net, dsp_name, dsp, letter):
    """Flip-flops to move into the DSP's ``letter`` operand register, as ``(pin, ff name)``
    pairs, and their ``(clk, ce, rst)``; ``None`` when the group stays in the fabric."""
    pins = [p for p in dsp["connections"] if p[0] == letter and p[1:].isdigit()]
    moves, control = [], set()
    for pin in pins:
        bit = dsp["connections"][pin][0]
        if not isinstance(bit, int):
            if bit == "1":
                return None
            continue
        source = net.driver.get(bit)
        if source is None or source[1] != "Q" or bit in net.port_bits:
            return None
        ff = net.cells[source[0]]
        if any(user != dsp_name or not (port[0] in "AB" and port[1:].isdigit())
               for user, port, _ in net.users[bit]):
            return None
        ctrl = _ff_control(ff)
        if ctrl is None:
            return None
        control.add(ctrl)
        moves.append((pin, source[0]))
    if not moves or len(control) != 1:
        return None
    return moves, control.pop()


def _output_group(net, dsp):
    pins = [p for p in dsp["connections"] if p[0] == "P" and p[1:].isdigit()]
    moves, control = [], set()
    for pin in pins:
        bit = dsp["connections"][pin][0]
        if not isinstance(bit, int) or not net.users[bit]:
            continue
        if bit in net.port_bits or len(net.users[bit]) != 1:
            return None
        user, port, _ = net.users[bit][0]
        ctrl = _ff_control(net.cells[user]) if port == "DI" else None
        if ctrl is None:
            return None
        control.add(ctrl)
        moves.append((pin, user))
    if not moves or len(control) != 1:
        return None
    return moves, control.pop()


def _enable_net(net, ce, rst, or_gates):
    """The DSP enable for a fabric enable ``ce`` and reset ``rst`` (see the module docstring)."""
    if ce is None:
        return "1"
    if rst is None:
        return ce
    if (ce, rst) not in or_gates:
        out = net.new_net()
        name = f"$dsp_regs$ce_or_rst${len(or_gates)}"
        net.cells[name] = {
            "hide_name": 1, "type": "LUT4", "parameters": {"INIT": _OR2_INIT},
            "attributes": {},
            "port_directions": {"A": "input", "B": "input", "C": "input", "D": "input",
                                "Z": "output"},
            "connections": {"A": [ce], "B": [rst], "C": ["0"], "D": ["0"], "Z": [out]}}
        net.users[ce].append((name, "A", 0))
        net.users[rst].append((name, "B", 0))
        net.driver[out] = (name, "Z")
        net.module["netnames"][f"{name}$z"] = {"hide_name": 1, "bits": [out], "attributes": {}}
        or_gates[(ce, rst)] = out
    return or_gates[(ce, rst)]


def _pack_one(net, dsp_name, dsp, or_gates):
    """Move what can move into one DSP; return the groups packed (``"A"``, ``"B"``, ``"P"``)."""
    if any(_param(dsp, f"{prefix}_CLK") not in ("", "NONE") for prefix in _GROUP_PREFIX.values()):
        return []
    groups = {}
    for letter in "AB":
        found = _input_group(net, dsp_name, dsp, letter)
        if found:
            groups[letter] = found
    if ("A" in groups) != ("B" in groups):
        # nextpnr has no timing model of a DSP with one input registered ("unsupported mixed
        # input register modes": it times it as if neither were), so the logic in front of a
        # lone moved register would count in series with the multiplier: both or neither.
        groups.pop("A", None)
        groups.pop("B", None)
    found = _output_group(net, dsp)
    if found:
        groups["P"] = found
    # the DSP has four clock, enable and reset selects each
    slots = {"CLK": [], "CE": [], "RST": []}
    wanted = {}
    for letter, (_, (clk, ce, rst)) in groups.items():
        wanted[letter] = {"CLK": clk, "CE": (ce, rst), "RST": "0" if rst is None else rst}
        for kind, value in wanted[letter].items():
            if value not in slots[kind]:
                slots[kind].append(value)
    if any(len(values) > 4 for values in slots.values()):
        return []
    enables = {key: _enable_net(net, *key, or_gates) for key in slots["CE"]}
    params = dsp["parameters"]
    for kind, values in slots.items():
        for index, value in enumerate(values):
            net.move_pin(dsp_name, f"{kind}{index}", enables[value] if kind == "CE" else value,
                         output=False)
    for letter, (moves, _) in groups.items():
        prefix = _GROUP_PREFIX[letter]
        for kind in ("CLK", "CE", "RST"):
            params[f"{prefix}_{kind}"] = f"{kind}{slots[kind].index(wanted[letter][kind])}"
        # an input pin reads the FF's D, an output bit drives the FF's Q net
        through = "Q" if letter == "P" else "DI"
        for pin, ff_name in moves:
            net.move_pin(dsp_name, pin, net.cells[ff_name]["connections"][through][0],
                         output=letter == "P")
    # Several pins (a sign extension; both operands of x * x) may share one FF: remove the FFs
    # after every group is rewired.
    for ff_name in sorted({ff for moves, _ in groups.values() for _, ff in moves}):
        net.remove(ff_name)
    if groups:
        params["RESETMODE"] = "SYNC"
        params["GSR"] = "DISABLED"
    return sorted(groups)


def pack_dsp_registers(path):
    """Pack registers into every ``MULT18X18D`` of the flattened netlist JSON at ``path`` (in
    place). Returns counts: ``dsps`` (all), ``input_a``/``input_b``/``output`` (DSPs with that
    register packed), ``flip_flops_moved`` and ``or_gates`` (``LUT4`` enables added)."""
    path = Path(path)
    data = json.loads(path.read_text())
    stats = {"dsps": 0, "input_a": 0, "input_b": 0, "output": 0, "flip_flops_moved": 0,
             "or_gates": 0}
    for module in data["modules"].values():
        if not any(cell["type"] == "MULT18X18D" for cell in module.get("cells", {}).values()):
            continue
        net = _Netlist(module)
        or_gates = {}
        before = len(net.cells)
        for name in sorted(n for n, c in module["cells"].items() if c["type"] == "MULT18X18D"):
            stats["dsps"] += 1
            for group in _pack_one(net, name, module["cells"][name], or_gates):
                stats[{"A": "input_a", "B": "input_b", "P": "output"}[group]] += 1
        stats["or_gates"] += len(or_gates)
        stats["flip_flops_moved"] += before + len(or_gates) - len(net.cells)
    path.write_text(json.dumps(data))
    return stats


def main(argv=None):
    """``python -m sparsehw.synth.dsp_registers NETLIST.json``: pack in place, print the counts
    as JSON (exit status 2 and one line on a missing or unreadable netlist)."""
    import argparse
    import sys
    parser = argparse.ArgumentParser(
        prog="python -m sparsehw.synth.dsp_registers",
        description="Move the registers around each MULT18X18D of a flattened synth_ecp5 JSON "
                    "netlist into the DSP (in place), before nextpnr-ecp5.")
    parser.add_argument("netlist", help="synth_ecp5 -json output (flattened)")
    args = parser.parse_args(argv)
    try:
        stats = pack_dsp_registers(args.netlist)
    except (OSError, ValueError, KeyError) as error:
        print(f"error: cannot pack {args.netlist}: {error}", file=sys.stderr)
        return 2
    print(json.dumps(stats, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
