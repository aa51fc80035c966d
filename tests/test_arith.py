"""hw/arith.py: the balanced adder tree."""

from amaranth.hdl import Const, signed

from sparsehw.hw.arith import tree_sum


def test_tree_sum_of_numbers():
    for n in range(1, 12):
        values = [3 * i - 7 for i in range(n)]
        assert tree_sum(values) == sum(values)


def test_tree_sum_is_balanced():
    # Depth ceil(log2(n)): the expression nests that many additions, not n - 1.
    terms = [Const(i, signed(8)) for i in range(8)]
    total = tree_sum(terms)
    depth = 0
    node = total
    while hasattr(node, "operands") and node.operator == "+":
        depth += 1
        node = node.operands[0]
    assert depth == 3


def _run_delay(cycles, enables):
    """Feed 1, 2, 3, ... into a ``delay`` of ``cycles`` with the given enable pattern; return
    the output seen after each edge."""
    from amaranth.hdl import Module, Signal
    from amaranth.sim import Simulator
    from sparsehw.hw.arith import delay
    m = Module()
    x, en = Signal(8), Signal()
    y = delay(m, x, cycles, "t", en)
    seen = []

    async def bench(ctx):
        for i, e in enumerate(enables):
            ctx.set(x, i + 1)
            ctx.set(en, e)
            await ctx.tick()
            seen.append(ctx.get(y))

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return seen


def test_delay_counts_only_enabled_edges():
    # Always enabled: the value fed before edge i is out after edge i + 2 (3 registers).
    assert _run_delay(3, [1] * 6) == [0, 0, 1, 2, 3, 4]
    # Edges with en low hold the chain: the values 1, 3, 5 are taken at the enabled edges
    # 0, 2, 4 and are out after the 2nd enabled edge from there (edges 2, 4, 6), held between.
    assert _run_delay(2, [1, 0, 1, 0, 1, 0, 1]) == [0, 0, 1, 1, 3, 3, 5]


def test_delay_of_zero_cycles_is_the_value_and_registers_are_named():
    from amaranth.hdl import Module, Signal
    from sparsehw.hw.arith import delay, register
    m = Module()
    x = Signal(4)
    assert delay(m, x, 0, "z") is x
    assert delay(m, x, 2, "chain").name == "chain_d2"
    assert register(m, x, "r").shape() == x.shape()
