"""Small arithmetic building blocks shared by the datapath generators."""

from amaranth.hdl import Signal, Value
from amaranth.lib import data


__all__ = ["tree_sum", "register", "delay"]


def tree_sum(values):
    """Sum of ``values`` as a balanced adder tree (depth ``ceil(log2(n))``, not a chain).

    Works on Amaranth values (or plain numbers); each level adds neighbouring pairs, an odd
    last element is carried up unchanged.
    """
    values = list(values)
    while len(values) > 1:
        values = [values[i] + values[i + 1] if i + 1 < len(values) else values[i]
                  for i in range(0, len(values), 2)]
    return values[0]


def register(m, value, name, en=None, reset_less=False):
    """A register named ``name`` in ``m``'s ``sync`` domain, loaded with ``value`` at every clock
    edge (only at the edges where ``en`` is high, when given); without a reset when
    ``reset_less`` (a data register read only under a valid that has one). A
    :class:`~amaranth.lib.data.View` gives a register of the same layout. Returns the register."""
    shape = value.shape() if isinstance(value, data.View) else Value.cast(value).shape()
    reg = Signal(shape, name=name, reset_less=reset_less)
    if en is None:
        m.d.sync += reg.eq(value)
    else:
        with m.If(en):
            m.d.sync += reg.eq(value)
    return reg


def delay(m, value, cycles, name, en=None, reset_less=False):
    """``value`` delayed by ``cycles`` clock edges (enabled edges, when ``en`` is given): a chain
    of :func:`register` (``reset_less`` passed on) named ``{name}_d1`` .. ``{name}_d{cycles}``;
    ``value`` itself when ``cycles`` is 0."""
    for k in range(1, cycles + 1):
        value = register(m, value, f"{name}_d{k}", en, reset_less)
    return value
