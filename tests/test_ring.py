# amaranth: UnusedElaboratable=no
"""Ring interconnect (sparsehw.hw.ring, sparsehw.golden.ring, sparsehw.families.ring): golden model,
parameter errors, interfaces, Amaranth-simulator check, cocotb runs. The harness
(sparsehw.verif.ring) has tests/test_ring_harness.py."""

import random

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.sim import Simulator

import sparsehw.golden.ring as golden
from sparsehw.hw.export import to_verilog
from sparsehw.families.ring import BLOCKS
from sparsehw.hw.ring import (RING_PARAMS, ArbitrationSignature, Ring, RingRouter, SlotSignature,
                              _between_mask, _Buffer, _free_bits, _link_flits)
from sparsehw.verif.coverage import holes
from sparsehw.verif.runner import new_build_dir, run_cocotb


# -- golden model ---------------------------------------------------------------------------------

def test_route_is_minimal_with_parity_tie_break():
    assert golden.route(0, 0, 4) == (0, 0)
    assert golden.route(0, 1, 4) == (+1, 1)
    assert golden.route(0, 3, 4) == (-1, 1)
    assert golden.route(0, 2, 4) == (+1, 2)      # tie, even source: CW
    assert golden.route(1, 3, 4) == (-1, 2)      # tie, odd source: CCW
    assert golden.route(4, 1, 5) == (+1, 2)
    for k in range(2, 17):
        for s in range(k):
            for d in range(k):
                direction, hops = golden.route(s, d, k)
                assert hops == min((d - s) % k, (s - d) % k)
                assert (s + direction * hops) % k == d


def test_zero_load_latency_formula():
    assert golden.zero_load_latency(3, 3, 8) == 1
    assert golden.zero_load_latency(0, 4, 8) == 5
    assert golden.mean_zero_load_latency("neighbour", 8) == 2


@pytest.mark.parametrize("k", range(2, 17, 2))
@pytest.mark.parametrize("pattern", golden.PATTERNS)
def test_routing_reaches_the_ideal_bound_for_even_k(pattern, k):
    # The parity tie-break balances tied traffic when k/2 is even; then the channel loads meet
    # the D&T bound. For k = 2 mod 4 an odd number of tied flows crosses each link, so no
    # per-flow rule can split them evenly and uniform traffic falls short by a little.
    bound, ideal = golden.channel_bound(pattern, k), golden.ideal_throughput(pattern, k)
    if k % 4 == 0 or pattern != "uniform":
        assert bound == pytest.approx(ideal)
    else:
        assert 0.85 * ideal <= bound <= ideal


def test_ideal_throughput_values():
    assert golden.ideal_throughput("uniform", 16) == 0.5
    assert golden.ideal_throughput("tornado", 8) == pytest.approx(1 / 3)
    assert golden.ideal_throughput("tornado", 4) == 1.0
    assert golden.ideal_throughput("hotspot", 8) == 0.125
    with pytest.raises(ValueError, match="pattern must be one of"):
        golden.ideal_throughput("transpose", 8)
    with pytest.raises(ValueError, match="k must be an integer in 2..16, not 17"):
        golden.ideal_throughput("uniform", 17)
    with pytest.raises(TypeError, match="k must be an integer in 2..16, not 4.0"):
        golden.ideal_throughput("uniform", 4.0)
    with pytest.raises(TypeError, match="k must be an integer in 2..16, not True"):
        golden.route(0, 1, True)


def test_route_rejects_bad_nodes():
    with pytest.raises(ValueError, match="dst must be an integer in 0..3, not 4"):
        golden.route(0, 4, 4)
    with pytest.raises(TypeError, match="src must be an integer in 0..3, not '1'"):
        golden.route("1", 2, 4)


SENT = [(0, 1, 10), (0, 1, 11), (1, 0, 12), (2, 1, 13)]


@pytest.mark.parametrize("delivered,message", [
    ([(0, 1, 10), (0, 1, 11), (1, 0, 12)], "1 lost"),
    (SENT + [(2, 1, 13)], "1 unexpected"),
    ([(0, 1, 10), (0, 1, 99), (1, 0, 12), (2, 1, 13)], "lost"),
    ([(0, 1, 11), (0, 1, 10), (1, 0, 12), (2, 1, 13)], "out of order"),
    ([(0, 1, 10), (0, 1, 11), (1, 2, 12), (2, 1, 13)], "lost"),
])
def test_scoreboard_catches_every_kind_of_error(delivered, message):
    with pytest.raises(golden.DeliveryError, match=message):
        golden.check_delivery(SENT, delivered)


def test_eject_buffer_is_the_direction_of_the_route():
    assert [golden.eject_buffer(src, 0, 5) for src in range(5)] == [2, 1, 1, 0, 0]
    assert [golden.eject_buffer(src, 1, 4) for src in range(4)] == [0, 2, 1, 1]


def _items(*sources):
    return [(src, f"{src}.{i}") for i, src in enumerate(sources)]


def test_eject_order_prefers_unserved_sources_round_robin():
    # Node 0 at k = 5: CW holds sources 4, 3; CCW holds 1, 2; local 0. From reset the
    # round-robin starts at CW; each source once per round; a new round when every head's
    # source was served.
    cw, ccw, local = _items(4, 4, 3), _items(1, 2), _items(0, 0)
    order = golden.eject_order([cw, ccw, local], depth=16)
    assert order == [(0, cw[0]), (1, ccw[0]), (2, local[0]),   # round {4, 1, 0}
                     (1, ccw[1]),                              # 2 the only fresh head
                     (2, local[1]),                            # heads 4, 0 served: new round {0}
                     (0, cw[1]), (0, cw[2])]                   # 4, then 3 fresh
    # The same source at the head of CW again is passed over while CCW's head is fresh.
    cw, ccw = _items(3, 3), _items(1)
    assert golden.eject_order([cw, ccw, []], depth=16, served={3}) == \
        [(1, ccw[0]), (0, cw[0]), (0, cw[1])]
    # Round-robin starts after the buffer served last.
    cw, ccw = _items(3), _items(1)
    assert golden.eject_order([cw, ccw, []], depth=16, last=0) == [(1, ccw[0]), (0, cw[0])]


def test_eject_order_serves_full_buffers_and_the_offered_beat_first():
    cw, ccw, local = _items(4, 3), _items(1), _items(0)
    # CW full (depth 2): it goes first even though CCW's source is fresh too; then CCW's
    # fresh head (rr after CW), then local, then CW's 3 (fresh).
    assert golden.eject_order([cw, ccw, local], depth=2) == \
        [(0, cw[0]), (1, ccw[0]), (2, local[0]), (0, cw[1])]
    # A beat already offered from the local buffer is served first.
    assert golden.eject_order([cw, ccw, local], depth=16, offered=2)[0] == (2, local[0])
    # Full CW with its head's source already served, unserved CCW head waiting: CW still
    # goes first and the round goes on (the CCW head's source is not yet served).
    cw, ccw = _items(4, 4), _items(1)
    assert golden.eject_order([cw, ccw, []], depth=2, served={4}) == \
        [(0, cw[0]), (1, ccw[0]), (0, cw[1])]


@pytest.mark.parametrize("kwargs,message", [
    ({"buffers": [[], []], "depth": 4}, "buffers must hold three sequences"),
    ({"buffers": [[(0, 1)] * 3, [], []], "depth": 2}, "a buffer holds at most depth = 2"),
    ({"buffers": [[], [], []], "depth": 4, "offered": 1}, "offered must name a non-empty"),
])
def test_eject_order_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        golden.eject_order(**kwargs)


def test_scoreboard_accepts_reordering_across_flows():
    golden.check_delivery(SENT, [(2, 1, 13), (1, 0, 12), (0, 1, 10), (0, 1, 11)])


# -- parameter errors -----------------------------------------------------------------------------

@pytest.mark.parametrize("cls,kwargs,error,message", [
    (Ring, {"nodes": 1}, ValueError, "nodes must be an integer in 2..16, not 1"),
    (Ring, {"nodes": 17}, ValueError, "nodes must be an integer in 2..16, not 17"),
    (Ring, {"nodes": 4.0}, TypeError, "nodes must be an integer in 2..16, not 4.0"),
    (Ring, {"width": 0}, ValueError, "width must be an integer in 1..1024, not 0"),
    (Ring, {"depth": 1}, ValueError, "depth must be an integer in 2..64, not 1"),
    (Ring, {"depth": 65}, ValueError, "depth must be an integer in 2..64, not 65"),
    (Ring, {"eject_depth": 1}, ValueError, "eject_depth must be an integer in 2..64, not 1"),
    (Ring, {"eject_depth": "16"}, TypeError, "eject_depth must be an integer in 2..64, not '16'"),
    (Ring, {"starve": 0}, ValueError, "starve must be an integer in 1..1023, not 0"),
    (Ring, {"starve": 1024}, ValueError, "starve must be an integer in 1..1023, not 1024"),
    (Ring, {"starve": True}, TypeError, "starve must be an integer in 1..1023, not True"),
    (Ring, {"quota": 0}, ValueError, "quota must be an integer in 1..16, not 0"),
    (Ring, {"quota": 17}, ValueError, "quota must be an integer in 1..16, not 17"),
    (Ring, {"lanes": 4}, TypeError, "unknown parameter 'lanes'"),
    (RingRouter, {"nodes": 4, "index": 4}, ValueError, "index must be an integer in 0..3, not 4"),
    (RingRouter, {"nodes": 4, "index": 1.0}, TypeError, "index must be an integer in 0..3"),
])
def test_illegal_parameters(cls, kwargs, error, message):
    with pytest.raises(error, match=message):
        cls(**kwargs)


def test_the_spec_is_the_one_the_registry_lists():
    assert BLOCKS[0].params is RING_PARAMS and BLOCKS[0].build is Ring
    assert RING_PARAMS.defaults() == {"nodes": 4, "width": 32, "depth": 16, "eject_depth": 16,
                                      "starve": 255, "quota": 4}
    ring = Ring()
    assert {name: getattr(ring, name) for name in RING_PARAMS.names} == RING_PARAMS.defaults()


def test_router_interfaces_are_signatures_joined_by_connect():
    router = RingRouter(nodes=5, index=2, width=8)
    assert isinstance(router.cw_out.signature, SlotSignature)
    assert isinstance(router.ccw_in.signature.flip(), SlotSignature)
    assert isinstance(router.cw_arb.signature, ArbitrationSignature)
    assert router.cw_out.signature == SlotSignature(5, 8) != SlotSignature(5, 9)
    assert router.ccw_in.signature.flip() == SlotSignature(5, 8)
    assert router.cw_arb.signature == ArbitrationSignature(5) != ArbitrationSignature(4)
    # One router's outgoing slot joins the next one's incoming slot; two outputs do not join.
    other = RingRouter(nodes=5, index=3, width=8)
    wiring.connect(Module(), router.cw_out, other.cw_in)
    with pytest.raises(wiring.ConnectionError):
        wiring.connect(Module(), router.cw_out, other.cw_out)
    # The ring's arbitration side is the flipped router side.
    wiring.connect(Module(), router.ccw_arb, ArbitrationSignature(5).flip().create())
    with pytest.raises(wiring.ConnectionError):
        wiring.connect(Module(), router.ccw_arb, ArbitrationSignature(4).flip().create())


def test_properties():
    ring = Ring(nodes=5, width=8, depth=2, eject_depth=3, starve=3, quota=2)
    assert ((ring.nodes, ring.width, ring.depth, ring.eject_depth, ring.starve, ring.quota)
            == (5, 8, 2, 3, 3, 2))
    with pytest.raises(AttributeError):
        ring.nodes = 4


def test_stalled_flow_capacity():
    assert golden.stalled_flow_capacity(1, 1, 4, 16, 16) == 16      # local: the local buffer
    assert golden.stalled_flow_capacity(0, 1, 4, 5, 3) == 3 + 1 + 5
    assert golden.stalled_flow_capacity(0, 2, 4, 5, 3) == 3 + 2 + 5  # 2 hops: two held slots
    with pytest.raises(ValueError, match="eject_depth"):
        golden.stalled_flow_capacity(0, 1, 4, 5, 1)
    with pytest.raises(ValueError, match="depth"):
        golden.stalled_flow_capacity(0, 1, 4, 65, 3)


@pytest.mark.parametrize("depth", [2, 3, 16])
def test_buffer_behaves_like_syncfifo_with_a_registered_head_key(depth):
    """``_Buffer`` against Amaranth's ``SyncFIFO`` (the reference) in lock-step on random
    writes and reads: ``full``/``r_rdy`` equal ``~w_rdy``/``r_rdy``, ``r_data`` the payload half
    of the reference's head and ``r_key`` its key half, every cycle."""
    m = Module()
    dut = m.submodules.dut = _Buffer(width=6, key_bits=3, depth=depth)
    ref = m.submodules.ref = SyncFIFO(width=9, depth=depth)
    rng = random.Random(depth)
    checked = []

    async def testbench(ctx):
        for cycle in range(3000):
            phase = (cycle // 300) % 3                  # fill, drain, mixed
            w, r = [(0.9, 0.2), (0.2, 0.9), (0.6, 0.6)][phase]
            data, key = rng.getrandbits(6), rng.getrandbits(3)
            w_en, r_en = rng.random() < w, rng.random() < r
            ctx.set(dut.w_en, w_en)
            ctx.set(dut.w_data, data)
            ctx.set(dut.w_key, key)
            ctx.set(dut.r_en, r_en)
            ctx.set(ref.w_en, w_en)
            ctx.set(ref.w_data, data | key << 6)
            ctx.set(ref.r_en, r_en)
            assert ctx.get(dut.full) == (not ctx.get(ref.w_rdy)), f"cycle {cycle}: full"
            assert ctx.get(dut.r_rdy) == ctx.get(ref.r_rdy), f"cycle {cycle}: r_rdy"
            if ctx.get(ref.r_rdy):
                head = ctx.get(ref.r_data)
                assert ctx.get(dut.r_data) == head & 0x3f, f"cycle {cycle}: r_data"
                assert ctx.get(dut.r_key) == head >> 6, f"cycle {cycle}: r_key"
                checked.append(ctx.get(ref.level))
            await ctx.tick()

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    assert {1, depth} <= set(checked)                   # empty, full and between were reached


# -- Amaranth simulator: random traffic, random stalls, scoreboard ---------------------------------

@pytest.mark.parametrize("k", [3, 4])
def test_amaranth_sim_random_traffic(k):
    dut = Ring(nodes=k, width=12, depth=2, eject_depth=2, starve=2)
    rng = random.Random(k)
    packets = 60
    todo = {s: [(rng.randrange(k), rng.getrandbits(12)) for _ in range(packets)]
            for s in range(k)}
    injected, delivered = [], []

    async def testbench(ctx):
        current = {s: None for s in range(k)}
        for _ in range(40 * packets):
            for s in range(k):
                if current[s] is None and todo[s] and rng.random() < 0.7:
                    current[s] = todo[s].pop(0)
                ctx.set(dut.inject[s].valid, current[s] is not None)
                if current[s] is not None:
                    ctx.set(dut.inject[s].p.dest, current[s][0])
                    ctx.set(dut.inject[s].p.payload, current[s][1])
                ctx.set(dut.eject[s].ready, rng.random() < 0.6)
            for s in range(k):
                if ctx.get(dut.inject[s].valid) and ctx.get(dut.inject[s].ready):
                    injected.append((s, *current[s]))
                    current[s] = None
                if ctx.get(dut.eject[s].valid) and ctx.get(dut.eject[s].ready):
                    delivered.append((ctx.get(dut.eject[s].p.src), s,
                                      ctx.get(dut.eject[s].p.payload)))
            await ctx.tick()
            if len(delivered) == k * packets:
                break

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    assert len(injected) == k * packets
    golden.check_delivery(injected, delivered)


# -- cocotb (Icarus) ------------------------------------------------------------------------------

@pytest.mark.sim
@pytest.mark.parametrize("k", [2, 4, 5])
def test_cocotb_ring_regression(k):
    result = run_cocotb(Ring(nodes=k, width=16), "ring", "sparsehw.verif.ring.tb_ring",
                        build_dir=new_build_dir(f"test-ring-{k}"), seed=k,
                        params={"nodes": k, "width": 16}, workload={"packets": 80})
    assert result.passed, f"{result.errors} see {result.log}"
    assert result.tests == 12
    assert result.record["pairs"] == k * k
    # Functional coverage: every flow delivered, every router starved in each direction a
    # 2-hop route passes it (k >= 4), every injection queue full, every ejection port held,
    # an out-of-range destination flagged (k = 5), a flit for a needy router delivered at
    # zero-load latency for every router and direction (k >= 3), full-first and per-source
    # ejection rounds at every node with each buffer the full one (k >= 3), the exact ejection
    # order of the model at every node, every handshake bin.
    found = holes(result.record, "ring")
    assert found == {}, f"coverage holes: {found}"
    summary = result.record["coverage"]["ring"]
    assert len(summary["pair"]["bins"]) == k * k
    assert len(summary["eject_order"]["bins"]) == (4 if k >= 3 else 3) * k
    assert ("starvation" in summary) == (k >= 4)
    assert ("bad_dest" in summary) == (k == 5)
    assert ("needy_dest" in summary) == (k >= 3)
    assert ("eject_share" in summary) == (k >= 3)
    if k >= 3:
        assert len(summary["needy_dest"]["bins"]) == 2 * k
        assert len(summary["eject_share"]["bins"]) == 3 * k
    assert {f"{side}{i}.handshake" for side in ("inject", "eject") for i in range(k)} <= \
        set(summary)


def test_between_mask_lists_the_routers_a_flit_passes():
    assert _between_mask(1, 4, 8, +1) == 0b0001100        # CW 1 -> 4 passes 2, 3
    assert _between_mask(6, 1, 8, +1) == 0b10000001       # CW wraps: passes 7, 0
    assert _between_mask(2, 7, 8, -1) == 0b00000011       # CCW 2 -> 7 passes 1, 0
    assert _between_mask(3, 4, 8, +1) == 0                # neighbour: passes nobody
    for src in range(5):
        for dst in range(5):
            direction, hops = golden.route(src, dst, 5)
            if direction:
                assert bin(_between_mask(src, dst, 5, direction)).count("1") == hops - 1


def test_link_flits_are_the_flows_routed_over_each_link():
    # The pruning's model of which flits a link can carry (hw.ring._link_flits), against the
    # golden routing function: flow src -> dest occupies exactly its `hops` links, the first
    # leaving src, each one step further in its direction.
    assert _link_flits(1, 4, +1) == {(0, 2), (1, 2)}      # 0 -> 2 ties CW (even source)
    assert _link_flits(0, 4, -1) == {(0, 3), (1, 3)}      # 1 -> 3 ties CCW through 0
    assert _link_flits(1, 2, +1) == set()                 # 1 -> 0 ties CCW at k = 2
    for k in (2, 3, 4, 5, 8):
        for step in (+1, -1):
            for src in range(k):
                for dest in range(k):
                    direction, hops = golden.route(src, dest, k)
                    on = {(src + step * h) % k for h in range(hops)} if direction == step \
                        else set()
                    assert {x for x in range(k)
                            if (src, dest) in _link_flits(x, k, step)} == on


def test_free_bits_splits_varying_and_constant_bits():
    assert _free_bits([2, 3], 3) == ([0], 2)              # 0b010, 0b011: bit 0 varies
    assert _free_bits([3, 4], 3) == ([0, 1, 2], 0)
    assert _free_bits([5], 3) == ([], 5)
    assert _free_bits([], 2) == ([0, 1], 0)               # nothing known: keep every bit


@pytest.mark.parametrize("k", [2, 3])
def test_routers_build_only_the_queues_and_buffers_some_route_uses(k):
    """A router has an injection queue for each direction it sends in and an ejection buffer
    for each link a flit ejects from (golden routing): at 2 nodes node 0 sends only CW and
    node 1 only CCW, so each has one queue and one ring ejection buffer; from 3 nodes on,
    all of them."""
    import re
    verilog = to_verilog(Ring(nodes=k, width=8), "ring")
    parts = set(re.findall(r"^module \\ring\.router(\d)\.(\w+) ", verilog, re.M))
    expected = {(str(r), "local") for r in range(k)}
    for r in range(k):
        for name, step in (("cw", +1), ("ccw", -1)):
            if any(golden.route(r, d, k)[0] == step for d in range(k)):
                expected.add((str(r), f"{name}_queue"))
            if any(golden.route(s, r, k)[0] == step for s in range(k)):
                expected.add((str(r), f"{name}_eject"))
    assert parts == expected
    if k == 2:
        assert parts == {("0", "local"), ("0", "cw_queue"), ("0", "ccw_eject"),
                         ("1", "local"), ("1", "ccw_queue"), ("1", "cw_eject")}
