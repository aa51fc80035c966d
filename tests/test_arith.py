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
