"""cocotb regression of :class:`sparsehw.hw.ring.Ring` against :mod:`sparsehw.golden.ring`.

- every source/destination pair alone: latency equals :func:`golden.ring.zero_load_latency`;
- random traffic with random injection gaps and random ejection back-pressure, checked by the
  scoreboard :func:`golden.ring.check_delivery` (multiset and per-flow order);
- out-of-range destinations (when ``nodes`` is not a power of two) are flagged and dropped.

Workload knobs (``verif.common.workload()``): ``packets`` per node (default 120), ``stall``
probability on every stream (default 0.3).
"""

import cocotb
from amaranth.hdl import Shape
from cocotb.triggers import ReadOnly, RisingEdge

import sparsehw.golden.ring as golden
from sparsehw.hw.ring import eject_layout, inject_layout
from sparsehw.verif import common
from sparsehw.verif.stream import collect, endpoints, pack, start, unpack


def _setup():
    p = common.params()
    k, width = p.get("nodes", 4), p.get("width", 32)
    return k, width, inject_layout(k, width), eject_layout(k, width)


async def _start(dut, k):
    """Clock, injection idle, ejection always ready, reset."""
    for i in range(k):
        getattr(dut, f"eject__{i}__ready").value = 1
    await start(dut, sources=[f"inject__{i}" for i in range(k)])


@cocotb.test()
async def every_pair_alone_has_the_documented_latency(dut):
    k, width, inj_l, ej_l = _setup()
    await _start(dut, k)
    rng = common.rng(10)
    for src in range(k):
        for dst in range(k):
            payload = rng.getrandbits(width)
            valid = getattr(dut, f"inject__{src}__valid")
            getattr(dut, f"inject__{src}__payload").value = pack(inj_l, {"dest": dst,
                                                                          "payload": payload})
            valid.value = 1
            await ReadOnly()
            assert getattr(dut, f"inject__{src}__ready").value == 1, "idle ring refused a flit"
            await RisingEdge(dut.clk)               # injection handshake at this edge
            valid.value = 0
            latency = None
            for cycle in range(1, 4 * k + 8):
                await ReadOnly()
                fired = [i for i in range(k) if getattr(dut, f"eject__{i}__valid").value == 1]
                if fired:
                    assert fired == [dst], f"{src}->{dst}: flit appeared at nodes {fired}"
                    got = unpack(ej_l, getattr(dut, f"eject__{dst}__payload").value)
                    assert got == {"src": src, "payload": payload}, f"{src}->{dst}: got {got}"
                    latency = cycle                 # ejection handshake at the next edge
                    await RisingEdge(dut.clk)
                    break
                await RisingEdge(dut.clk)
            assert latency == golden.zero_load_latency(src, dst, k), \
                f"{src}->{dst}: latency {latency}, model {golden.zero_load_latency(src, dst, k)}"
            await ReadOnly()
            assert all(getattr(dut, f"eject__{i}__valid").value == 0 for i in range(k))
            await RisingEdge(dut.clk)
    common.record(pairs=k * k)


@cocotb.test()
async def random_traffic_with_stalls_matches_scoreboard(dut):
    k, width, inj_l, ej_l = _setup()
    load = common.workload()
    packets, stall = load.get("packets", 120), load.get("stall", 0.3)
    await _start(dut, k)
    rng = common.rng(20)
    injected = []
    sources, sinks = zip(*(endpoints(dut, f"inject__{i}", f"eject__{i}", stall=stall,
                                     salt=100 + 2 * i) for i in range(k)))
    for i in range(k):
        # Bursts to one destination (stress per-flow order) mixed with uniform destinations.
        items = []
        while len(items) < packets:
            dst = rng.randrange(k)
            for _ in range(rng.choice((1, 1, 2, 5))):
                items.append((dst, rng.getrandbits(width)))
        items = items[:packets]
        injected += [(i, dst, payload) for dst, payload in items]
        sources[i].send_nowait(pack(inj_l, {"dest": d, "payload": p}) for d, p in items)
    first = sinks[0]._cycle
    for i in range(k):
        expected = sum(1 for _, d, _ in injected if d == i)
        await collect(sinks[i], expected, timeout_cycles=60 * packets * k)
    for _ in range(4 * k):                          # nothing extra may arrive
        await RisingEdge(dut.clk)
    delivered = []
    for i in range(k):
        for bits in sinks[i].items:                 # every item, so an extra one is caught
            item = unpack(ej_l, bits)
            delivered.append((item["src"], i, item["payload"]))
    golden.check_delivery(injected, delivered)
    assert int(dut.bad_dest.value) == 0
    cycles = max(s.last_cycle for s in sinks if s.last_cycle is not None) - first + 1
    common.record(cycles=cycles, flits=len(injected))


@cocotb.test()
async def out_of_range_destination_is_flagged_and_dropped(dut):
    k, width, inj_l, ej_l = _setup()
    await _start(dut, k)
    bits = Shape.cast(inj_l["dest"].shape).width
    if k == 2 ** bits:
        assert int(dut.bad_dest.value) == 0         # no out-of-range value exists
        return
    node = k - 1
    valid = getattr(dut, f"inject__{node}__valid")
    getattr(dut, f"inject__{node}__payload").value = pack(inj_l, {"dest": k, "payload": 1})
    valid.value = 1
    await ReadOnly()
    assert getattr(dut, f"inject__{node}__ready").value == 1
    await RisingEdge(dut.clk)
    valid.value = 0
    for _ in range(2 * k + 4):
        await ReadOnly()
        assert all(getattr(dut, f"eject__{i}__valid").value == 0 for i in range(k))
        await RisingEdge(dut.clk)
    assert int(dut.bad_dest.value) == 1 << node
