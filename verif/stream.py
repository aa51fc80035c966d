"""The testbench toolkit: clock and reset, stream drivers and monitors with random stall
injection, payload packing, and wait-and-compare.

A testbench typically does::

    await start(dut, sources=("i",), sinks=("o",))        # clock, idle streams, reset
    src, sink = endpoints(dut, "i", "o", stall=0.3, salt=2)  # random valid gaps / back-pressure
    src.send_nowait(pack(layout, item) for item in items)
    got = await collect(sink, len(expected), decode=lambda bits: unpack(out_layout, bits))
    compare(got, expected)                                 # AssertionError listing mismatches

Streams follow :class:`amaranth.lib.stream.Signature`: ``<prefix>__valid``, ``<prefix>__ready``
and ``<prefix>__payload`` (one flat vector, however the payload layout is structured).

Handshake timing. Each driver drives its outputs just after a rising edge, then samples the
settled ``valid``/``ready`` in the read-only phase of the same cycle: a transfer happened at the
next edge exactly when both were high there. Sampling in the read-only phase (and not at the
edge) makes the drivers behave identically on Icarus and Verilator.
"""

from collections import deque

from amaranth.hdl import Shape
from amaranth.lib import data

from sparsehw.verif import common


__all__ = ["pack", "unpack", "StreamSource", "StreamSink", "start_clock", "reset", "start",
           "restart", "endpoints", "collect", "compare", "CycleCounter"]


# -- payload packing -------------------------------------------------------------------------

def _shape_width(shape):
    if isinstance(shape, data.Layout):
        return shape.size
    return Shape.cast(shape).width


def pack(layout, value):
    """Pack ``value`` into the integer bit pattern of ``layout``.

    ``layout`` is an :class:`amaranth.lib.data.Layout` (struct, union-free) or a plain shape;
    ``value`` is a dict (struct), a sequence (array) or an int. Signed fields take negative ints.
    Out-of-range values raise :class:`ValueError`, so a testbench never truncates silently.
    """
    if isinstance(layout, data.Layout):
        result = 0
        if isinstance(layout, data.ArrayLayout):
            if len(value) != layout.length:
                raise ValueError(f"array payload needs {layout.length} elements, got {len(value)}")
            items = enumerate(value)
        else:
            items = value.items()
        for key, item in items:
            field = layout[key]
            result |= pack(field.shape, item) << field.offset
        return result
    shape = Shape.cast(layout)
    low = -(1 << (shape.width - 1)) if shape.signed else 0
    high = (1 << (shape.width - 1)) - 1 if shape.signed else (1 << shape.width) - 1
    value = int(value)
    if not low <= value <= high:
        raise ValueError(f"value {value} does not fit {shape!r} ({low}..{high})")
    return value & ((1 << shape.width) - 1)


def unpack(layout, bits):
    """Inverse of :func:`pack`: dict for structs, list for arrays, int for plain shapes."""
    bits = int(bits)
    if isinstance(layout, data.ArrayLayout):
        return [unpack(layout.elem_shape, bits >> layout[i].offset) for i in range(layout.length)]
    if isinstance(layout, data.Layout):
        return {name: unpack(field.shape, bits >> field.offset) for name, field in layout}
    shape = Shape.cast(layout)
    bits &= (1 << shape.width) - 1
    if shape.signed and bits >> (shape.width - 1):
        bits -= 1 << shape.width
    return bits


# -- clock, reset, cycle counting --------------------------------------------------------------

def start_clock(dut, period_ns=10):
    """Start the ``clk`` of an Amaranth design."""
    from cocotb.clock import Clock
    return Clock(dut.clk, period_ns, unit="ns").start()


async def reset(dut, cycles=2):
    """Hold the synchronous ``rst`` high for ``cycles`` rising edges."""
    from cocotb.triggers import RisingEdge
    dut.rst.value = 1
    for _ in range(cycles):
        await RisingEdge(dut.clk)
    dut.rst.value = 0


async def start(dut, *, sources=(), sinks=(), reset_cycles=2, period_ns=10):
    """Start the clock, idle the listed streams (``valid`` low on the design's inputs
    ``sources``, ``ready`` low on its outputs ``sinks``) and reset the design.

    Once per cocotb test; :func:`restart` resets again later in the same test.
    """
    start_clock(dut, period_ns)
    await restart(dut, sources=sources, sinks=sinks, reset_cycles=reset_cycles)


async def restart(dut, *, sources=(), sinks=(), reset_cycles=2):
    """Idle the listed streams and reset the design (the clock is already running)."""
    for prefix in sources:
        getattr(dut, f"{prefix}__valid").value = 0
    for prefix in sinks:
        getattr(dut, f"{prefix}__ready").value = 0
    await reset(dut, reset_cycles)


def endpoints(dut, source, sink, *, stall=0.0, salt=0):
    """A :class:`StreamSource` on ``source`` and a :class:`StreamSink` on ``sink`` with the same
    stall probability; their stall generators are ``verif.common.rng(salt)`` and
    ``rng(salt + 1)``, so the stalls are independent of each other and of the data."""
    return (StreamSource(dut, source, rng=common.rng(salt), stall=stall),
            StreamSink(dut, sink, rng=common.rng(salt + 1), stall=stall))


async def collect(sink, count, *, timeout_cycles=None, decode=None):
    """Wait until ``sink`` holds ``count`` items (``TimeoutError`` after ``timeout_cycles``,
    default ``100 + 40 * count``); return them, each passed through ``decode`` when given."""
    await sink.wait_for(count, 100 + 40 * count if timeout_cycles is None else timeout_cycles)
    items = sink.items[:count]
    return [decode(item) for item in items] if decode is not None else list(items)


def compare(got, expected, *, same=None, describe=None, what="item", show=8):
    """Assert that ``got`` equals ``expected`` item by item (``same(g, e)``, default ``==``).

    The ``AssertionError`` counts the mismatches and lists the first ``show``, each as
    ``describe(index, got, expected)`` (default ``"item i: got G, expected E"``).
    """
    same = same or (lambda g, e: g == e)
    describe = describe or (lambda i, g, e: f"{what} {i}: got {g}, expected {e}")
    assert len(got) == len(expected), f"{len(got)} {what}s, expected {len(expected)}"
    bad = [describe(i, g, e) for i, (g, e) in enumerate(zip(got, expected)) if not same(g, e)]
    assert not bad, (f"{len(bad)} of {len(expected)} {what}s differ:\n" +
                     "\n".join(bad[:show]))


class CycleCounter:
    """Counts rising edges from :meth:`start`; ``count`` is read at any time."""

    def __init__(self, dut):
        self._dut = dut
        self.count = 0
        self._task = None

    def start(self):
        import cocotb
        self._task = cocotb.start_soon(self._run())
        return self

    async def _run(self):
        from cocotb.triggers import RisingEdge
        edge = RisingEdge(self._dut.clk)
        while True:
            await edge
            self.count += 1


# -- drivers -------------------------------------------------------------------------------------

class _Endpoint:
    def __init__(self, dut, prefix, clk=None, *, rng=None, stall=0.0):
        if not 0.0 <= stall < 1.0:
            raise ValueError(f"stall must be a probability in [0, 1), not {stall!r}")
        if stall and rng is None:
            raise ValueError("a random stall needs rng")
        self.valid = getattr(dut, f"{prefix}__valid")
        self.ready = getattr(dut, f"{prefix}__ready")
        self.payload = getattr(dut, f"{prefix}__payload", None)
        self.clk = clk if clk is not None else dut.clk
        self.rng = rng
        self.stall = stall
        self.transfers = 0
        self.first_cycle = None     # cycle index (edges since start) of the first transfer
        self.last_cycle = None      # ... and of the last one
        self._cycle = 0
        self._task = None
        # Handshake statistics for stall coverage (verif.coverage): cycles per state of the
        # port ("transfer": valid and ready, "held": valid and not ready, "empty": not valid),
        # transfers on consecutive cycles, and the longest run of held cycles.
        self.states = {"transfer": 0, "held": 0, "empty": 0}
        self.back_to_back = 0
        self.longest_hold = 0
        self._hold_run = 0
        self._last_transfer_cycle = None

    def _observe(self, valid, ready):
        """Account one cycle of the port's handshake (called once per cycle, after ReadOnly)."""
        if valid and ready:
            self.states["transfer"] += 1
            if self._last_transfer_cycle == self._cycle - 1:
                self.back_to_back += 1
            self._last_transfer_cycle = self._cycle
            self._hold_run = 0
        elif valid:
            self.states["held"] += 1
            self._hold_run += 1
            self.longest_hold = max(self.longest_hold, self._hold_run)
        else:
            self.states["empty"] += 1
            self._hold_run = 0

    def _stalled(self):
        return self.stall and self.rng.random() < self.stall

    def _note_transfer(self):
        self.transfers += 1
        if self.first_cycle is None:
            self.first_cycle = self._cycle
        self.last_cycle = self._cycle

    def start(self):
        import cocotb
        self._task = cocotb.start_soon(self._run())
        return self

    def stop(self):
        if self._task is not None:
            self._task.cancel()
            self._task = None


class StreamSource(_Endpoint):
    """Drives a stream into the design: ``<prefix>__valid`` and ``<prefix>__payload`` out,
    ``<prefix>__ready`` in.

    Items are ints (already packed, see :func:`pack`). With ``stall`` > 0, ``valid`` is held low
    on a random fraction of the cycles in which an item is waiting (AXI-style: once asserted,
    ``valid`` stays high until the transfer, as stream semantics require).
    """

    def __init__(self, dut, prefix, clk=None, *, rng=None, stall=0.0):
        super().__init__(dut, prefix, clk, rng=rng, stall=stall)
        self._queue = deque()
        self.valid.value = 0
        self.start()

    def send_nowait(self, items):
        """Queue items (ints) for sending."""
        self._queue.extend(items)

    @property
    def pending(self):
        return len(self._queue)

    async def wait_idle(self, timeout_cycles=None):
        """Wait until every queued item has been transferred."""
        from cocotb.triggers import RisingEdge
        waited = 0
        while self._queue:
            await RisingEdge(self.clk)
            waited += 1
            if timeout_cycles is not None and waited > timeout_cycles:
                raise TimeoutError(f"source still has {len(self._queue)} items after "
                                   f"{timeout_cycles} cycles")

    # Hooks for rate-limited sources (e.g. a bandwidth budget): called once per cycle, before a
    # new item is offered (False holds it back), when it is offered, and when it transferred.
    def _tick(self):
        pass

    def _may_offer(self):
        return True

    def _on_offer(self):
        pass

    def _on_transfer(self):
        pass

    async def _run(self):
        from cocotb.triggers import ReadOnly, RisingEdge
        edge = RisingEdge(self.clk)
        read_only = ReadOnly()
        asserted = False
        while True:
            self._tick()
            if self._queue and (asserted or (self._may_offer() and not self._stalled())):
                if not asserted:
                    self.payload.value = self._queue[0]
                    self.valid.value = 1
                    asserted = True
                    self._on_offer()
            elif not asserted:
                self.valid.value = 0
            await read_only
            fire = asserted and self.ready.value == 1
            self._observe(asserted, self.ready.value == 1)
            await edge
            if fire:
                self._queue.popleft()
                self._on_transfer()
                self._note_transfer()
                asserted = False
                if not self._queue:
                    self.valid.value = 0
            self._cycle += 1


class StreamSink(_Endpoint):
    """Accepts a stream out of the design, collecting payloads (ints) in :attr:`items`.

    With ``stall`` > 0, ``ready`` is held low on a random fraction of cycles (back-pressure).
    ``callback(item)``, when given, is called for every transfer.
    """

    def __init__(self, dut, prefix, clk=None, *, rng=None, stall=0.0, callback=None):
        super().__init__(dut, prefix, clk, rng=rng, stall=stall)
        self.items = []
        self.callback = callback
        self.ready.value = 0
        self.start()

    async def wait_for(self, count, timeout_cycles):
        """Wait until :attr:`items` holds ``count`` items, or fail after ``timeout_cycles``."""
        from cocotb.triggers import RisingEdge
        waited = 0
        while len(self.items) < count:
            await RisingEdge(self.clk)
            waited += 1
            if waited > timeout_cycles:
                raise TimeoutError(f"got {len(self.items)} of {count} items after "
                                   f"{timeout_cycles} cycles")

    async def _run(self):
        from cocotb.triggers import ReadOnly, RisingEdge
        edge = RisingEdge(self.clk)
        read_only = ReadOnly()
        while True:
            ready = not self._stalled()
            self.ready.value = int(ready)
            await read_only
            fire = ready and self.valid.value == 1
            self._observe(self.valid.value == 1, ready)
            item = int(self.payload.value) if fire and self.payload is not None else None
            await edge
            if fire:
                self.items.append(item)
                self._note_transfer()
                if self.callback is not None:
                    self.callback(item)
            self._cycle += 1
