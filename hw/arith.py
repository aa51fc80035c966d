"""Small arithmetic building blocks shared by the datapath generators."""

__all__ = ["tree_sum"]


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
