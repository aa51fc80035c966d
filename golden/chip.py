"""The S4-style chip: instruction set, memory map, error codes and the instruction-level model.

The chip is ``subsystems`` SPU subsystems on a ring (``docs/chip.md``). Each subsystem has an
instruction memory, a weight memory, a post-op memory and two activation banks, and a sequencer
that runs the program in its instruction memory from address 0. This module is the
**specification** the RTL (``hw/chip``) is checked against; it does not depend on the RTL.

Instruction set (one 128-bit word per instruction)
--------------------------------------------------
Bits ``[3:0]`` hold the opcode. Every field is an unsigned bit field at a fixed position (tables
below and in ``docs/chip.md``); bits not named by the opcode's layout are **reserved and must be
zero**.

====== ===== ================================================================================
opcode name  effect
====== ===== ================================================================================
0      --    illegal (an all-zero word: a program that runs off its end stops with an error)
1      GEMM  ``Y = post(W X)`` on the SPU; ``Y`` rows written to every subsystem in ``mask``
2      SEND  copy ``count`` rows of a bank to every subsystem in ``mask``
3      WAIT  block until ``count`` rows have arrived in ``bank``, then subtract ``count``
4      HALT  stop; the subsystem's state becomes HALTED
5      ACT   activation engine on a bank slice (only with ``act_engine``; else ``ERR_OPCODE``)
6..15  --    illegal
====== ===== ================================================================================

GEMM fields: ``relu[4]``, ``n_log2[7:5]``, ``m_log2[10:8]``, ``x_bank[11]``, ``d_bank[12]``,
``x_addr[27:13]``, ``d_addr[42:28]``, ``p_addr[57:43]``, ``k[73:58]``, ``o[89:74]``,
``mask[105:90]``, ``w_addr[127:106]``.

SEND fields: ``s_bank[4]``, ``r_bank[5]``, ``s_addr[20:6]``, ``r_addr[35:21]``,
``count[51:36]``, ``mask[67:52]``; bits ``[127:68]`` reserved.

WAIT fields: ``bank[4]``, ``count[20:5]``; bits ``[127:21]`` reserved.

HALT: bits ``[127:4]`` reserved.

ACT fields: ``op[6:4]``, ``fin[9:7]``, ``fout[13:10]``, ``oshift[17:14]``, ``s_bank[18]``,
``b_bank[19]``, ``d_bank[20]``, ``s_addr[35:21]``, ``b_addr[50:36]``, ``d_addr[65:51]``,
``p_addr[80:66]``, ``count[96:81]``; bits ``[127:97]`` reserved, and so are ``b_bank``/``b_addr``
unless ``op`` is add and ``p_addr`` unless ``op`` is layernorm (``ERR_RESERVED``).

Semantics (the order is the program order; an instruction's effects are complete before the
next instruction's begin, as far as any program obeying the hazard rule can observe)
------------------------------------------------------------------------------------------------
GEMM
    ``X = bank[x_bank][x_addr : x_addr + k]`` (``k`` rows, ``lanes`` int8 each). Output row ``r``
    (``0 <= r < o``) uses the weight words ``w_addr + r*bpr .. w_addr + (r+1)*bpr - 1`` with
    ``bpr = ceil((k / m * n) / macs)`` (the entries after the row's ``k/m*n`` nonzeros in its last
    word are ignored, as in the SPU) and the post-op word ``p_addr + r``; ``n = 2**n_log2``,
    ``m = 2**m_log2``. ``Y`` is exactly :func:`golden.spu.spu_gemm` (numeric rules in
    :mod:`golden.nm`). Row ``r`` of ``Y`` is written to ``bank[d_bank][d_addr + r]`` of **every**
    subsystem ``d`` whose bit ``d`` is set in ``mask`` (the own bit = a local write; other bits =
    over the ring), and each such delivery adds 1 to that subsystem's arrival counter of
    ``d_bank``. A row with malformed weight indices is written as zeros and sets the sticky
    ``row_error`` status bit of the computing subsystem; it does not stop it.
SEND
    Rows ``bank[s_bank][s_addr : s_addr + count]`` are written to ``bank[r_bank][r_addr : r_addr
    + count]`` of every subsystem in ``mask`` (own bit included: a local copy, whose source and
    destination must not overlap), each row adding 1 to the receiver's counter of ``r_bank``.
    ``count = 0`` does nothing.
WAIT
    Blocks until ``counter[bank] >= count``, then ``counter[bank] -= count``. Every delivered row
    counts, local ones included (a subsystem that writes its own GEMM output with the own mask bit
    waits for those rows like for remote ones). Counters are cleared at start; they cannot
    overflow (:func:`counter_bits`).
ACT (chip parameter ``act_engine``; :func:`act_slice` is the rule)
    Reads ``S = bank[s_bank][s_addr : s_addr + count]`` (``count`` rows of ``lanes`` int8) and
    writes ``count`` rows to ``bank[d_bank][d_addr :]`` of this subsystem only (no arrival is
    counted: ACT is blocking, its writes are complete before the next instruction starts).
    ``op`` 0..3 (gelu, exp, log2, recip) apply :func:`golden.act.run` to every element with
    ``fin``/``fout``. ``op`` 4, 5 (softmax, layernorm) normalise along the **hidden dimension**,
    which is the bank's row index (a bank row = one channel x ``lanes`` batch columns): each of
    the ``lanes`` columns of ``S`` is one engine row of ``count`` elements (``count <=
    act_max_row``). LayerNorm's ``gamma_i`` (Q4.12) and ``beta_i`` (output format) are the low
    and high halves (int16 each) of the ``bias`` field of post-op word ``p_addr + i``. Every int16
    result goes to int8 as ``sat8(rshift_round(y, oshift))`` (round half up, saturate to
    -128..127). ``op`` 6 (add): ``y = sat8(rshift_round((s << fin) + (b << fout), oshift))`` with
    ``b = bank[b_bank][b_addr + i]`` (the residual add of power-of-two scaled codes). An
    element-wise op that meets log2 of ``x <= 0`` or recip of 0 writes the engine's saturated
    code and sets the sticky ``row_error`` bit; the subsystem goes on. Source (and ``b``) and
    destination slices must coincide (in place) or be disjoint (``ERR_OVERLAP``).
HALT
    The subsystem stops with state HALTED once its earlier instructions have finished (in the
    RTL: every row it produced has been written locally or handed to the ring). The chip is done
    when every subsystem has halted or stopped on an error and the ring is empty.

**Hazard rule** (a program obligation, which the compiler obeys): an instruction may read a bank
row, or overwrite a row that another instruction may still read, only after a WAIT has accounted
for every delivery to that row the instruction depends on. Rows from one sender to one receiver
arrive in the order they were sent (the ring keeps per-flow order); rows of different senders
interleave in any order. Programs that obey the rule give the same final memories whatever the
relative timing of the subsystems. This model's reference schedule runs the subsystems
round-robin, one instruction each per round, and delivers rows at once; ``ChipModel.run(seed,
max_delay)`` runs random schedules with delayed deliveries and counts hazards.

Errors
------
Before an instruction has any effect the sequencer checks it; a failing check stops the
subsystem with state ERROR, ``error`` = the code and ``pc`` = the address of the instruction.
When several checks fail, the **smallest code** is reported. ``reset`` (host) clears state,
error, pc, counters and ``row_error`` (not the memories) and the next start runs normally.

== ================ ==================================================================
1  ERR_OPCODE       opcode 0, 6..15, or 5 (ACT) on a chip without ``act_engine``
2  ERR_RESERVED     a reserved bit is set
3  ERR_NM           GEMM: ``m_log2 > log2(max_m)`` or ``n_log2 > m_log2``
4  ERR_K            GEMM: ``k == 0``, ``k > max_k``, ``k % m != 0`` or ``k % act_rows != 0``;
                    ACT: ``count == 0``, or ``count > act_max_row`` for softmax/layernorm
5  ERR_O            GEMM: ``o == 0``
6  ERR_ALIGN        GEMM: ``x_addr % act_rows != 0``
7  ERR_SRC_RANGE    GEMM: ``x_addr + k > bank_rows``; SEND, ACT: ``s_addr + count >
                    bank_rows``; ACT add: ``b_addr + count > bank_rows``
8  ERR_W_RANGE      GEMM: ``w_addr + o * bpr > wmem_depth``
9  ERR_P_RANGE      GEMM: ``p_addr + o > pmem_depth``; ACT layernorm: ``p_addr + count >
                    pmem_depth``
10 ERR_DST_RANGE    GEMM: ``d_addr + o > bank_rows``; SEND: ``r_addr + count > bank_rows``;
                    ACT: ``d_addr + count > bank_rows``
11 ERR_NODE         GEMM/SEND: a ``mask`` bit ``>= subsystems`` is set
12 ERR_PC           the program counter reached ``imem_depth`` (no HALT)
13 ERR_DEADLOCK     WAIT can never complete: every subsystem still running is blocked on a
                    WAIT and no row is in flight (the chip detects it; the model too)
14 ERR_ACT_OP       ACT: ``op == 7`` (the op-dependent ACT checks are then skipped)
15 ERR_OVERLAP      ACT: the destination slice shares rows with the source (or add's ``b``)
                    slice in the same bank without coinciding with it
== ================ ==================================================================

Memory map and word formats (host port)
---------------------------------------
Per subsystem, memory ids (``MEM_*``), depth in words, and word format (bit 0 = LSB; the formats
are the SPU's port layouts, :func:`hw.spu.spu_layouts`):

- ``MEM_IMEM = 0``: ``imem_depth`` words of 128 bits (instructions).
- ``MEM_WMEM = 1``: ``wmem_depth`` words of ``macs * (8 + idx_bits)`` bits, ``idx_bits =
  max(1, log2(max_m))``; entry ``p`` at bits ``p*(8+idx_bits)``: int8 value (two's complement)
  then the index.
- ``MEM_PMEM = 2``: ``pmem_depth`` words of 53 bits: ``bias`` int32 ``[31:0]``, ``mult`` u16
  ``[47:32]``, ``shift`` u5 ``[52:48]``.
- ``MEM_BANK0 = 3``, ``MEM_BANK1 = 4``: ``bank_rows`` rows of ``lanes * 8`` bits, lane ``b`` at
  ``[8b+7:8b]`` (int8). Addresses count rows (an RTL with wider bank words keeps row addressing
  at the host port).
- Status (read only): :func:`status_word`: ``state[1:0]`` (0 IDLE, 1 RUNNING, 2 HALTED,
  3 ERROR), ``error[5:2]``, ``row_error[6]``, ``pc[31:16]``.
"""

import operator
from dataclasses import dataclass

import numpy as np

from sparsehw.golden import act, ring, spu
from sparsehw.params import Param, ParamSpec, boolean, int_in, pow2_in


__all__ = [
    "INSTR_BITS", "OPCODES", "OP_GEMM", "OP_SEND", "OP_WAIT", "OP_HALT", "OP_ACT",
    "Gemm", "Send", "Wait", "Halt", "Act", "ACT_OPS", "ACT_ADD", "LAYOUTS", "encode", "decode", "DecodeError",
    "ERRORS", "ERR_NONE", "ERR_OPCODE", "ERR_RESERVED", "ERR_NM", "ERR_K", "ERR_O", "ERR_ALIGN",
    "ERR_SRC_RANGE", "ERR_W_RANGE", "ERR_P_RANGE", "ERR_DST_RANGE", "ERR_NODE", "ERR_PC",
    "ERR_DEADLOCK", "ERR_ACT_OP", "ERR_OVERLAP", "check", "check_word", "beats_per_row",
    "MEM_IMEM", "MEM_WMEM", "MEM_PMEM", "MEM_BANK0", "MEM_BANK1", "MEMORIES",
    "IDLE", "RUNNING", "HALTED", "ERROR", "STATES", "status_word", "counter_bits",
    "CHIP_PARAMS", "MODEL_PARAMS", "chip_params", "ADDR_BITS", "W_ADDR_BITS", "MAX_ROWS", "idx_bits", "word_bits",
    "pack_w", "unpack_w", "pack_post", "unpack_post", "pack_row", "unpack_row",
    "Status", "Subsystem", "ChipModel", "sat8", "act_slice", "CYCLE_COSTS", "act_cycles",
    "gemm_cycles", "SEQ_CHECK_STAGES",
]


#: Width of one instruction word.
INSTR_BITS = 128
#: Width of the bank-row and post-op address fields (banks and the post-op memory hold at most
#: ``2**ADDR_BITS`` words).
ADDR_BITS = 15
#: Width of the weight address field.
W_ADDR_BITS = 22
#: Largest bank / post-op memory depth and largest ``max_k`` the chip accepts.
MAX_ROWS = 1 << ADDR_BITS

OP_GEMM, OP_SEND, OP_WAIT, OP_HALT, OP_ACT = 1, 2, 3, 4, 5
#: Opcode by mnemonic; ACT executes only on a chip with ``act_engine`` (else ``ERR_OPCODE``).
OPCODES = {"GEMM": OP_GEMM, "SEND": OP_SEND, "WAIT": OP_WAIT, "HALT": OP_HALT, "ACT": OP_ACT}

(ERR_NONE, ERR_OPCODE, ERR_RESERVED, ERR_NM, ERR_K, ERR_O, ERR_ALIGN, ERR_SRC_RANGE,
 ERR_W_RANGE, ERR_P_RANGE, ERR_DST_RANGE, ERR_NODE, ERR_PC, ERR_DEADLOCK, ERR_ACT_OP,
 ERR_OVERLAP) = range(16)
#: Error names by code (``error`` field of the status, 4 bits).
ERRORS = {0: "NONE", 1: "OPCODE", 2: "RESERVED", 3: "NM", 4: "K", 5: "O", 6: "ALIGN",
          7: "SRC_RANGE", 8: "W_RANGE", 9: "P_RANGE", 10: "DST_RANGE", 11: "NODE", 12: "PC",
          13: "DEADLOCK", 14: "ACT_OP", 15: "OVERLAP"}

MEM_IMEM, MEM_WMEM, MEM_PMEM, MEM_BANK0, MEM_BANK1 = range(5)
#: Memory names by id (host port).
MEMORIES = {MEM_IMEM: "imem", MEM_WMEM: "wmem", MEM_PMEM: "pmem", MEM_BANK0: "bank0",
            MEM_BANK1: "bank1"}

IDLE, RUNNING, HALTED, ERROR = range(4)
#: Subsystem states by code (``state`` field of the status, 2 bits).
STATES = {IDLE: "IDLE", RUNNING: "RUNNING", HALTED: "HALTED", ERROR: "ERROR"}



def counter_bits(params):
    """Width of an arrival counter that cannot overflow in one run: a program has no branches,
    so at most ``imem_depth`` instructions per subsystem each deliver at most ``bank_rows`` rows
    to a bank: ``ceil_log2(subsystems * imem_depth * bank_rows + 1)``."""
    total = params["subsystems"] * params["imem_depth"] * params["bank_rows"]
    return total.bit_length()


#: The chip model's generation parameters (the RTL adds its own, such as the flit width, by
#: ``ParamSpec(*CHIP_PARAMS, ...)``). SPU parameters as in :class:`hw.spu.SPU`.
CHIP_PARAMS = ParamSpec(
    Param("subsystems", 4, int_in(1, 16), doc="SPU subsystems on the ring"),
    Param("lanes", 4, int_in(1, 64), doc="SPU batch columns = int8 per bank row"),
    Param("macs", 2, int_in(1, 16), doc="SPU nonzero weights per cycle = entries per weight word"),
    Param("max_m", 32, pow2_in(1, 32), doc="largest N:M group size"),
    Param("act_rows", 2, pow2_in(1, 16), doc="rows of X per SPU activation beat"),
    Param("max_k", 128, lambda v: pow2_in(max(v["max_m"], v["act_rows"]), MAX_ROWS),
          doc="largest K of one GEMM", allowed="a power of two in max(max_m, act_rows)..32768"),
    Param("imem_depth", 64, pow2_in(2, 1 << 15), doc="instructions per subsystem"),
    Param("wmem_depth", 1024, pow2_in(2, 1 << W_ADDR_BITS), doc="weight words per subsystem"),
    Param("pmem_depth", 256, pow2_in(2, MAX_ROWS), doc="post-op words per subsystem"),
    Param("bank_rows", 256, lambda v: pow2_in(v["max_k"], MAX_ROWS),
          doc="rows per activation bank (two banks)", allowed="a power of two in max_k..32768"),
)


#: The model's parameters: :data:`CHIP_PARAMS` plus the activation engine (the RTL's
#: ``act_engine``/``act_max_row`` generation parameters, same names; ``hw/chip`` builds an
#: ``ActEngine`` per subsystem when ``act_engine`` is True and then needs ``lanes`` a power of
#: two <= 16).
MODEL_PARAMS = ParamSpec(
    *CHIP_PARAMS,
    Param("act_engine", False, boolean(),
          doc="an activation engine per subsystem: opcode 5 (ACT) executes (else ERR_OPCODE)"),
    Param("act_max_row", 256, lambda v: pow2_in(2 * v["lanes"], 4096),
          doc="longest softmax/layernorm row of ACT (the engine's max_row)",
          allowed="a power of two in 2*lanes..4096"),
)


def chip_params(params=None, **kwargs):
    """:data:`MODEL_PARAMS`-validated values from a dict that may hold more keys (the RTL's
    ``flit_width``, ``index``: ignored) plus keyword arguments (which must be model parameters).

    Raises
    ------
    TypeError, ValueError
        An unknown keyword argument, or a value of the wrong type or out of range.
    """
    given = {name: value for name, value in (params or {}).items()
             if name in MODEL_PARAMS.names}
    return MODEL_PARAMS.validate(**{**given, **kwargs})


# -- instruction formats ------------------------------------------------------------------------
def _layout(*items):
    """``{field: (lsb, width)}`` from ``(name, width)`` pairs packed upwards from bit 4."""
    out, lsb = {}, 4
    for name, width in items:
        out[name] = (lsb, width)
        lsb += width
    assert lsb <= INSTR_BITS
    return out


#: Field positions ``{field: (lsb, width)}`` per opcode (the opcode itself is bits [3:0]).
LAYOUTS = {
    OP_GEMM: _layout(("relu", 1), ("n_log2", 3), ("m_log2", 3), ("x_bank", 1), ("d_bank", 1),
                     ("x_addr", ADDR_BITS), ("d_addr", ADDR_BITS), ("p_addr", ADDR_BITS),
                     ("k", 16), ("o", 16), ("mask", 16), ("w_addr", W_ADDR_BITS)),
    OP_SEND: _layout(("s_bank", 1), ("r_bank", 1), ("s_addr", ADDR_BITS), ("r_addr", ADDR_BITS),
                     ("count", 16), ("mask", 16)),
    OP_WAIT: _layout(("bank", 1), ("count", 16)),
    OP_HALT: {},
    OP_ACT: _layout(("op", 3), ("fin", 3), ("fout", 4), ("oshift", 4), ("s_bank", 1),
                    ("b_bank", 1), ("d_bank", 1), ("s_addr", ADDR_BITS), ("b_addr", ADDR_BITS),
                    ("d_addr", ADDR_BITS), ("p_addr", ADDR_BITS), ("count", 16)),
}

#: ACT ``op`` codes: :data:`golden.act.OP_CODES` (0 gelu, 1 exp, 2 log2, 3 recip, 4 softmax,
#: 5 layernorm) plus 6 add (saturating residual add of two bank slices); 7 is ``ERR_ACT_OP``.
ACT_ADD = 6
ACT_OPS = {**act.OP_CODES, "add": ACT_ADD}


class DecodeError(ValueError):
    """A word that is not a valid instruction (illegal opcode or a reserved bit set)."""

    def __init__(self, message, code):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Gemm:
    """GEMM: ``bank[d_bank][d_addr:+o]`` of every subsystem in ``mask`` = ``post(W X)``.

    Fields (see the module docstring for the semantics): ``x_bank`` (0/1), ``x_addr`` (row),
    ``w_addr`` (weight word), ``p_addr`` (post-op word), ``n_log2``, ``m_log2`` (0..7; the SPU
    accepts ``n_log2 <= m_log2 <= log2(max_m)``), ``k`` (rows of X, 0..65535), ``o`` (output
    rows, 0..65535), ``relu`` (0/1), ``d_bank``, ``d_addr``, ``mask`` (bit ``d`` = subsystem
    ``d``).
    """
    x_bank: int = 0
    x_addr: int = 0
    w_addr: int = 0
    p_addr: int = 0
    n_log2: int = 0
    m_log2: int = 0
    k: int = 1
    o: int = 1
    relu: int = 0
    d_bank: int = 1
    d_addr: int = 0
    mask: int = 1
    opcode = OP_GEMM


@dataclass(frozen=True)
class Send:
    """SEND: ``bank[s_bank][s_addr:+count]`` to ``bank[r_bank][r_addr:+count]`` of every
    subsystem in ``mask``."""
    s_bank: int = 0
    s_addr: int = 0
    count: int = 0
    mask: int = 0
    r_bank: int = 0
    r_addr: int = 0
    opcode = OP_SEND


@dataclass(frozen=True)
class Wait:
    """WAIT: block until ``count`` rows have arrived in ``bank`` (then consume them)."""
    bank: int = 0
    count: int = 0
    opcode = OP_WAIT


@dataclass(frozen=True)
class Halt:
    """HALT: stop this subsystem."""
    opcode = OP_HALT


@dataclass(frozen=True)
class Act:
    """ACT: one activation-engine operation on ``count`` rows of a bank (module docstring).

    ``op`` (:data:`ACT_OPS`), ``fin``/``fout`` (the engine's input/output fraction bits; for
    ``add``: left shifts of the two operands), ``oshift`` (int16 -> int8 right shift),
    ``s_bank``/``s_addr`` (source rows), ``b_bank``/``b_addr`` (second operand of ``add``),
    ``d_bank``/``d_addr`` (destination rows), ``p_addr`` (layernorm's gamma/beta words),
    ``count`` (rows).
    """
    op: int = 0
    fin: int = 0
    fout: int = 0
    oshift: int = 0
    s_bank: int = 0
    s_addr: int = 0
    b_bank: int = 0
    b_addr: int = 0
    d_bank: int = 0
    d_addr: int = 0
    p_addr: int = 0
    count: int = 1
    opcode = OP_ACT


_CLASSES = {OP_GEMM: Gemm, OP_SEND: Send, OP_WAIT: Wait, OP_HALT: Halt, OP_ACT: Act}


def encode(instr):
    """The 128-bit word of ``instr`` (a :class:`Gemm`, :class:`Send`, :class:`Wait`,
    :class:`Halt` or :class:`Act`).

    Only the field widths are checked here (any value that fits is encodable, so that programs
    the hardware must reject can be written); :func:`check` applies the chip's ranges.

    Raises
    ------
    TypeError
        ``instr`` is not an instruction, or a field is not an integer.
    ValueError
        A field does not fit its width.
    """
    if type(instr) not in _CLASSES.values():
        raise TypeError(f"instr must be a Gemm, Send, Wait, Halt or Act, not {instr!r}")
    word = instr.opcode
    for name, (lsb, width) in LAYOUTS[instr.opcode].items():
        value = getattr(instr, name)
        try:
            value = operator.index(value)
        except TypeError:
            raise TypeError(f"{name} must be an integer, not {value!r}") from None
        if not 0 <= value < 1 << width:
            raise ValueError(f"{name} must be an integer in 0..{(1 << width) - 1}, not {value!r}")
        word |= value << lsb
    return word


def decode(word, act_engine=False):
    """The instruction of a 128-bit word (opcode 5, ACT, only with ``act_engine``).

    Raises
    ------
    DecodeError
        Illegal opcode (``code = ERR_OPCODE``; ACT without ``act_engine`` included) or a
        reserved bit set (``code = ERR_RESERVED``).
    ValueError
        ``word`` is negative or wider than 128 bits.
    """
    word = int(word)
    if not 0 <= word < 1 << INSTR_BITS:
        raise ValueError(f"word must be an integer in 0..2**128-1, not {word!r}")
    opcode = word & 0xF
    if opcode not in _CLASSES or (opcode == OP_ACT and not act_engine):
        raise DecodeError(f"illegal opcode {opcode}", ERR_OPCODE)
    used = 0xF
    values = {}
    for name, (lsb, width) in LAYOUTS[opcode].items():
        values[name] = (word >> lsb) & ((1 << width) - 1)
        used |= ((1 << width) - 1) << lsb
    if word & ~used:
        raise DecodeError(f"reserved bits set in {_CLASSES[opcode].__name__} word {word:#x}",
                          ERR_RESERVED)
    return _CLASSES[opcode](**values)


def beats_per_row(k, n_log2, m_log2, macs):
    """Weight words per output row: ``ceil((k >> m_log2 << n_log2) / macs)``."""
    nonzeros = (k >> m_log2) << n_log2
    return -(-nonzeros // macs)


def check(instr, params):
    """Error code of a decoded instruction on a chip with ``params`` (0 when legal).

    ``params``: chip parameters (:func:`chip_params`: missing keys take the defaults, keys
    outside :data:`CHIP_PARAMS` are ignored).
    When several checks fail the smallest code is returned (the hardware's priority).
    """
    p = params if all(name in params for name in MODEL_PARAMS.names) else chip_params(params)
    rows = p["bank_rows"]
    codes = []
    if isinstance(instr, Gemm):
        if (1 << instr.m_log2) > p["max_m"] or instr.n_log2 > instr.m_log2:
            codes.append(ERR_NM)
        m = 1 << instr.m_log2
        if not (0 < instr.k <= p["max_k"] and instr.k % m == 0 and instr.k % p["act_rows"] == 0):
            codes.append(ERR_K)
        if instr.o == 0:
            codes.append(ERR_O)
        if instr.x_addr % p["act_rows"]:
            codes.append(ERR_ALIGN)
        if instr.x_addr + instr.k > rows:
            codes.append(ERR_SRC_RANGE)
        bpr = beats_per_row(instr.k, instr.n_log2, instr.m_log2, p["macs"])
        if instr.w_addr + instr.o * bpr > p["wmem_depth"]:
            codes.append(ERR_W_RANGE)
        if instr.p_addr + instr.o > p["pmem_depth"]:
            codes.append(ERR_P_RANGE)
        if instr.d_addr + instr.o > rows:
            codes.append(ERR_DST_RANGE)
        if instr.mask >> p["subsystems"]:
            codes.append(ERR_NODE)
    elif isinstance(instr, Send):
        if instr.s_addr + instr.count > rows:
            codes.append(ERR_SRC_RANGE)
        if instr.r_addr + instr.count > rows:
            codes.append(ERR_DST_RANGE)
        if instr.mask >> p["subsystems"]:
            codes.append(ERR_NODE)
    elif isinstance(instr, Act):
        codes += _check_act(instr, p)
    elif not isinstance(instr, (Wait, Halt)):
        raise TypeError(f"instr must be a Gemm, Send, Wait, Halt or Act, not {instr!r}")
    return min(codes, default=ERR_NONE)


def _overlap(bank_a, addr_a, bank_b, addr_b, count):
    """Two slices of ``count`` rows share a row but do not coincide."""
    return bank_a == bank_b and addr_a != addr_b and abs(addr_a - addr_b) < count


def _check_act(a, p):
    if not p["act_engine"]:
        return [ERR_OPCODE]
    codes = []
    if a.op not in ACT_OPS.values():
        return [ERR_ACT_OP]
    rows = p["bank_rows"]
    name = {code: n for n, code in ACT_OPS.items()}[a.op]
    if (name != "add" and (a.b_bank or a.b_addr)) or (name != "layernorm" and a.p_addr):
        codes.append(ERR_RESERVED)
    if a.count == 0 or (name in act.ROW_OPS and a.count > p["act_max_row"]):
        codes.append(ERR_K)
    if a.s_addr + a.count > rows or (name == "add" and a.b_addr + a.count > rows):
        codes.append(ERR_SRC_RANGE)
    if name == "layernorm" and a.p_addr + a.count > p["pmem_depth"]:
        codes.append(ERR_P_RANGE)
    if a.d_addr + a.count > rows:
        codes.append(ERR_DST_RANGE)
    if _overlap(a.s_bank, a.s_addr, a.d_bank, a.d_addr, a.count) or (
            name == "add" and _overlap(a.b_bank, a.b_addr, a.d_bank, a.d_addr, a.count)):
        codes.append(ERR_OVERLAP)
    return codes


def check_word(word, params):
    """Error code of an instruction word (0 when it executes): :func:`decode` then
    :func:`check`."""
    p = params if all(name in params for name in MODEL_PARAMS.names) else chip_params(params)
    try:
        instr = decode(word, act_engine=p["act_engine"])
    except DecodeError as error:
        return error.code
    return check(instr, p)


def status_word(state, error, row_error, pc):
    """The 32-bit status the host reads: ``state[1:0] | error[5:2] | row_error[6] | pc[31:16]``."""
    return (state & 3) | (error & 0xF) << 2 | (int(bool(row_error)) << 6) | (pc & 0xFFFF) << 16


# -- memory word formats (host port) ------------------------------------------------------------
def idx_bits(params):
    """Bits of one weight index: ``max(1, log2(max_m))``."""
    return max(1, params["max_m"].bit_length() - 1)


def word_bits(mem, params):
    """Width of one word of memory ``mem`` (a ``MEM_*`` id)."""
    return {MEM_IMEM: INSTR_BITS, MEM_WMEM: params["macs"] * (8 + idx_bits(params)),
            MEM_PMEM: 53, MEM_BANK0: 8 * params["lanes"],
            MEM_BANK1: 8 * params["lanes"]}[mem]


def pack_w(values, indices, params):
    """One weight word from ``macs`` int8 values and their indices (entry ``p`` at bit
    ``p * (8 + idx_bits)``: value, then index)."""
    ib = idx_bits(params)
    word = 0
    for p, (value, index) in enumerate(zip(values, indices)):
        word |= ((int(value) & 0xFF) | (int(index) & ((1 << ib) - 1)) << 8) << (p * (8 + ib))
    return word


def unpack_w(word, params):
    """``(values, indices)`` lists of one weight word (inverse of :func:`pack_w`)."""
    ib = idx_bits(params)
    values, indices = [], []
    for p in range(params["macs"]):
        entry = word >> (p * (8 + ib))
        value = entry & 0xFF
        values.append(value - 256 if value & 0x80 else value)
        indices.append((entry >> 8) & ((1 << ib) - 1))
    return values, indices


def pack_post(bias, mult, shift):
    """One post-op word: ``bias`` int32 ``[31:0]``, ``mult`` u16 ``[47:32]``, ``shift`` u5
    ``[52:48]``."""
    return (int(bias) & 0xFFFFFFFF) | (int(mult) & 0xFFFF) << 32 | (int(shift) & 0x1F) << 48


def unpack_post(word):
    """``(bias, mult, shift)`` of one post-op word."""
    bias = word & 0xFFFFFFFF
    return (bias - (1 << 32) if bias >> 31 else bias), (word >> 32) & 0xFFFF, (word >> 48) & 0x1F


def pack_row(row):
    """One bank row from ``lanes`` int8 (lane ``b`` at ``[8b+7:8b]``)."""
    word = 0
    for b, value in enumerate(row):
        word |= (int(value) & 0xFF) << (8 * b)
    return word


def unpack_row(word, lanes):
    """The ``lanes`` int8 of one bank row word."""
    out = []
    for b in range(lanes):
        value = (word >> (8 * b)) & 0xFF
        out.append(value - 256 if value & 0x80 else value)
    return out


# -- the ACT instruction's arithmetic ----------------------------------------------------------
def sat8(v):
    """Clamp to the int8 range."""
    return max(-128, min(127, v))


def act_slice(sub, a):
    """What an :class:`Act` writes: ``(rows, domain)``, ``rows`` an int8 array
    ``(count, lanes)`` from the banks (and post-op memory) of ``sub``, ``domain`` True if an
    element-wise op met an input outside its domain (log2 of x <= 0, recip of 0).

    Rules (module docstring): element-wise ops apply :func:`golden.act.run` to every element;
    softmax and layernorm apply it to each **column** (lane) of the slice, the ``count`` rows
    being the row the operation normalises; every int16 result ``y`` becomes
    ``sat8(rshift_round(y, oshift))``. ``add``: ``sat8(rshift_round((a << fin) + (b << fout),
    oshift))``. LayerNorm's ``gamma_i`` / ``beta_i`` are the low / high 16 bits (two's
    complement) of the ``bias`` field of post-op word ``p_addr + i``.
    """
    lanes = sub.banks.shape[2]
    x = sub.banks[a.s_bank, a.s_addr:a.s_addr + a.count].astype(np.int64)
    out = np.zeros((a.count, lanes), dtype=np.int8)
    domain = False
    if a.op == ACT_ADD:
        b = sub.banks[a.b_bank, a.b_addr:a.b_addr + a.count].astype(np.int64)
        for i in range(a.count):
            for j in range(lanes):
                out[i, j] = sat8(act.rshift_round((int(x[i, j]) << a.fin)
                                                  + (int(b[i, j]) << a.fout), a.oshift))
        return out, False
    name = act.OPS[a.op]
    if name in act.ROW_OPS:
        gamma = beta = None
        if name == "layernorm":
            bias = sub.p_bias[a.p_addr:a.p_addr + a.count].astype(np.int64) & 0xFFFFFFFF
            gamma = [int(v) - ((v & 0x8000) << 1) for v in bias & 0xFFFF]
            beta = [int(v) - ((v & 0x8000) << 1) for v in bias >> 16]
        for j in range(lanes):
            ys, _ = act.run(name, [int(v) for v in x[:, j]], fin=a.fin, fout=a.fout,
                            gamma=gamma, beta=beta)
            out[:, j] = [sat8(act.rshift_round(y, a.oshift)) for y in ys]
        return out, False
    ys, flags = act.run(name, [int(v) for v in x.reshape(-1)], fin=a.fin, fout=a.fout)
    out[:] = np.array([sat8(act.rshift_round(y, a.oshift)) for y in ys]).reshape(a.count, lanes)
    return out, any(flags)


# -- cycle model ----------------------------------------------------------------------------------
#: Register stages of the RTL sequencer's decode and checks, from the instruction register to
#: the issue slot (hw/chip/subsystem.py builds exactly these; docs/chip.md, "Sequencer pipeline").
SEQ_CHECK_STAGES = 4

#: Per-instruction cycle costs of the chip model (docs/chip.md, "Cycle model"; sources there).
CYCLE_COSTS = {
    "spu_latency": spu.SPU_PIPELINE_LATENCY,   # golden.spu: weight beat to output row
    "hop": 1,                  # docs/ring.md: a slot advances one hop per cycle
    "ring_extra": 1,           # docs/ring.md: zero-load latency = hops + 1
    "flits_per_row": 2,        # sender port cycles per row and destination (fit, docs/chip.md)
    "send_per_row": 1,         # SEND: port cycles per row and destination (measured on the
                               # RTL: sparsehw.model.calibrate, docs/model.md)
    "send_latency": 2,         # SEND: a row is in the injector 2 cycles after its read starts:
                               # the bank read and the row register (hw/chip/subsystem.py)
    "send_self_land": 4,       # SEND to the own node: the row is a ring flit too (a port cycle
                               # per row, like a remote destination); the chip is done 4 cycles
                               # after its injection (measured on the RTL: 1..64 rows, alone
                               # and with remote destinations, exact; tests/test_model_rtl.py)
    # ACT, fitted to the chip RTL (tests/test_chip.py::test_chip_act_cycles_match_the_model,
    # lanes 4; docs/chip.md "Cycle model"): exact at every measured point. The engine's own
    # latencies come from golden.act (PIPE_DEPTH, SUM_STAGE, SCALAR_CYCLES, ROW_START_CYCLES:
    # its pipeline, 15 stages since issue #14's third timing round, and the hand-over of a row
    # between its double row buffers' two sides); the remaining constants are the ACT unit's
    # command, read, FIFO and write cycles, measured (unchanged by the engine's pipelining).
    "act_start": 1,            # the ACT unit's dispatch cycle
    "act_cmd": act.PIPE_DEPTH + 6,     # per element-wise engine command: command, read, engine
                                       # pipeline, write (21)
    "act_row": {               # per lane (engine command): fill and drain
        # the row start, the sum pass's drain to its E stage, the scalar step, the output
        # pass's drain (53)
        "softmax": (act.ROW_START_CYCLES + act.SUM_STAGE + 1 + act.SCALAR_CYCLES["softmax"]
                    + act.PIPE_DEPTH + 9),
        # the row start, the scalar step, the output pass's drain (48)
        "layernorm": act.ROW_START_CYCLES + act.SCALAR_CYCLES["layernorm"] + act.PIPE_DEPTH + 8},
    "act_passes": {"softmax": 3, "layernorm": 2},  # row passes of the engine
    "act_add": 2,              # add: the two operand reads' latency
    # hw/chip/subsystem.py's sequencer pipeline (docs/chip.md, "Sequencer pipeline"): the next
    # instruction waits decoded and checked in the issue slot (prefetched), so an instruction
    # costs its ISSUE cycle + the cycle its unit reports done in
    "issue": 2,                # sequencer cycles per instruction
    "issue_fill": 2 + SEQ_CHECK_STAGES,  # once per run: the imem read, the instruction register
                               # and the check stages fill before the first instruction issues
    "wait_resume": 1,          # a WAIT ends issue cycles after max(its start, its count-th
                               # ring row's landing + wait_resume): with the prefetch the WAIT
                               # starts a cycle earlier, the row counts at the same cycle
    "gemm_read": 1,            # hw/chip/subsystem.py: the GEMM readers' data register (issue
                               # #14: block RAM -> register -> FIFO) delays every operand beat,
                               # so every output row, by one cycle (was 0 before it)
    "gemm_release": 1,         # hw/chip/subsystem.py: the sequencer leaves GEMM the cycle after
                               # the SPU's last output row is taken (g_busy clears)
    "ring_land": -1,           # a remote row counts at its destination hops * hop + ring_extra
                               # - 1 cycles after it leaves the sender (measured on the RTL:
                               # SEND and the 2-subsystem chains exact, docs/chip.md)
}


def gemm_cycles(g, params, costs=CYCLE_COSTS):
    """``(issue, finish_of_row, release)`` of one GEMM instruction (one tile): the SPU issues
    ``bpr = beats_per_row`` weight beats per output row, one per cycle, after a stall of
    ``max(0, k / act_rows - bpr)`` while X loads (golden.spu.spu_cycles' rule); row ``r`` is out
    ``(r + 1) * bpr + stall + spu_latency + gemm_read`` cycles after the start (``spu_latency`` =
    ``golden.spu.SPU_PIPELINE_LATENCY``; ``gemm_read``: the readers' data register, issue #14);
    ``issue = stall + o * bpr`` cycles after the start the
    SPU has taken its last weight beat; the sequencer fetches the next instruction ``release =
    finish_of_row(o - 1) + gemm_release`` cycles after the start: it waits in GEMM until the
    SPU's last row is out (hw/chip/subsystem.py), so the pipeline latency is paid once per GEMM,
    not overlapped with the next instruction."""
    bpr = beats_per_row(g.k, g.n_log2, g.m_log2, params["macs"])
    stall = max(0, g.k // params["act_rows"] - bpr)

    def finish(r):
        return stall + (r + 1) * bpr + costs["spu_latency"] + costs["gemm_read"]
    return stall + g.o * bpr, finish, finish(g.o - 1) + costs["gemm_release"]


def act_cycles(a, params, costs=CYCLE_COSTS):
    """Cycles of one ACT instruction in the chip RTL (its issue cycles not included), after
    ``act_start``: element-wise, ``count`` rows at one per cycle plus ``act_cmd`` per engine
    command of at most ``65535 // lanes`` rows; row-wise, per lane (one engine command each):
    the gathered load pass (``count`` cycles, one bank row per cycle), ``passes - 2`` engine
    passes of ``ceil(count / lanes)`` beats (softmax's sum pass), the scattered output pass
    (``count`` cycles, one byte-lane row write per cycle) and ``act_row``; add: ``count`` rows
    at one per cycle (both operands read at once, even from one bank) plus ``act_add``."""
    lanes, count = params["lanes"], a.count
    if a.op == ACT_ADD:
        return costs["act_start"] + count + costs["act_add"]
    name = act.OPS[a.op]
    if name in act.ROW_OPS:
        beats = -(-count // lanes)
        return costs["act_start"] + lanes * (2 * count + (costs["act_passes"][name] - 2) * beats
                                             + costs["act_row"][name])
    commands = -(-count // (65535 // lanes))
    return costs["act_start"] + count + commands * costs["act_cmd"]


# -- instruction-level model --------------------------------------------------------------------
@dataclass(frozen=True)
class Status:
    """What the host reads of one subsystem: ``state`` (``IDLE``/``RUNNING``/``HALTED``/
    ``ERROR``), ``error`` code, ``pc`` (address of the HALT or of the failing instruction),
    ``row_error`` (sticky: a GEMM met a malformed weight row)."""
    state: int
    error: int
    pc: int
    row_error: bool

    @property
    def word(self):
        """The 32-bit status word (:func:`status_word`)."""
        return status_word(self.state, self.error, self.row_error, self.pc)

    def __str__(self):
        return (f"{STATES[self.state]} error={ERRORS[self.error]} pc={self.pc}"
                f"{' row_error' if self.row_error else ''}")


class Subsystem:
    """The architectural state of one subsystem (numpy arrays the host may read and write).

    Attributes
    ----------
    imem : numpy.ndarray of object, shape (imem_depth,)
        Instruction words (Python ints).
    w_value : numpy.ndarray of int8, shape (wmem_depth, macs)
    w_index : numpy.ndarray of uint8, shape (wmem_depth, macs)
        Weight words: entry ``p`` of word ``a`` is ``(w_value[a, p], w_index[a, p])``.
    p_bias : numpy.ndarray of int32, shape (pmem_depth,)
    p_mult : numpy.ndarray of uint16, shape (pmem_depth,)
    p_shift : numpy.ndarray of uint8, shape (pmem_depth,)
        Post-op words.
    banks : numpy.ndarray of int8, shape (2, bank_rows, lanes)
        The two activation banks, one row per entry.
    state, error, pc, row_error, counters
        Sequencer state (``counters[b]``: rows arrived in bank ``b`` not yet consumed by WAIT).
    """

    def __init__(self, index, params):
        self.index = index
        p = params
        self.imem = np.zeros(p["imem_depth"], dtype=object)
        self.w_value = np.zeros((p["wmem_depth"], p["macs"]), dtype=np.int8)
        self.w_index = np.zeros((p["wmem_depth"], p["macs"]), dtype=np.uint8)
        self.p_bias = np.zeros(p["pmem_depth"], dtype=np.int32)
        self.p_mult = np.zeros(p["pmem_depth"], dtype=np.uint16)
        self.p_shift = np.zeros(p["pmem_depth"], dtype=np.uint8)
        self.banks = np.zeros((2, p["bank_rows"], p["lanes"]), dtype=np.int8)
        self.reset()

    def reset(self):
        self.state, self.error, self.pc, self.row_error = IDLE, ERR_NONE, 0, False
        self.counters = [0, 0]

    @property
    def status(self):
        return Status(self.state, self.error, self.pc, self.row_error)


class ChipModel:
    """Instruction-level model of the chip: the final memories the RTL must produce, bit for bit.

    Parameters
    ----------
    params : dict, optional
        Generation parameters (:data:`CHIP_PARAMS`; missing ones take the defaults; other keys,
        such as the RTL's ``flit_width``, are ignored). Keyword arguments are merged into it.

    Attributes
    ----------
    params : dict
        The validated parameters.
    subs : list of Subsystem
        One per subsystem: memories and sequencer state.
    stats : dict
        Counts of the last run: ``instructions`` (executed, per subsystem), ``ring_rows`` (rows
        delivered to another subsystem, per sender), ``local_rows`` (rows delivered to the own
        banks), ``macs`` (nonzero weight x ``lanes`` products of the GEMMs), ``rounds``,
        ``hazards`` (GEMMs and SENDs that read a bank row with a delivery still in flight to it:
        the hazard rule broken; only delayed schedules, :meth:`run` with ``max_delay``, can
        see one).

    Raises
    ------
    TypeError, ValueError
        Illegal parameters (:data:`CHIP_PARAMS`).

    Notes
    -----
    :meth:`run` starts every subsystem at pc 0 (clearing counters, state and ``row_error``) and
    executes rounds: in each round every running subsystem executes one instruction, in
    subsystem order; a WAIT whose count has not arrived is retried in the next round. Rows are
    delivered instantly. When a round makes no progress while some subsystem still runs (all of
    them blocked on WAIT), every blocked subsystem stops with ``ERR_DEADLOCK``. Programs have no
    branches, so a run always ends. GEMM results are :func:`golden.spu.spu_gemm`; see the module
    docstring for every instruction's rule and the error checks.
    """

    def __init__(self, params=None, **kwargs):
        self.params = chip_params(params, **kwargs)
        self.subs = [Subsystem(s, self.params) for s in range(self.params["subsystems"])]
        self._clear_stats()
        self._rng, self._max_delay, self._flight, self._flow_last = None, 0, [], {}
        self._round = self._seq = 0

    def _clear_stats(self):
        n = self.params["subsystems"]
        self.stats = {"instructions": [0] * n, "ring_rows": [0] * n, "local_rows": [0] * n,
                      "macs": [0] * n, "act_elements": [0] * n, "rounds": 0, "hazards": 0,
                      "cycles": [0] * n, "total_cycles": 0,
                      "cycle_parts": [{"gemm": 0, "act": 0, "send": 0, "wait": 0, "halt": 0,
                                       "issue": 0} for _ in range(n)]}
        self._t = [0] * n                          # per subsystem: its sequencer's clock
        self._port_free = [0] * n                  # per subsystem: ring injection port free at
        self._last_row = [0] * n                   # per subsystem: its last row delivered at
        self._arrivals = {}                        # (receiver, bank) -> arrival times pending

    def _spend(self, s, part, cycles):
        self._t[s] += cycles
        self.stats["cycle_parts"][s][part] += cycles

    # host side ---------------------------------------------------------------------------------
    def reset(self):
        """Hardware reset: every sequencer back to IDLE, error 0, pc 0, counters 0 (memories
        keep their contents)."""
        for sub in self.subs:
            sub.reset()

    def status(self, s):
        """:class:`Status` of subsystem ``s``."""
        return self.subs[s].status

    def load_program(self, s, program, addr=0):
        """Write instructions (objects or raw int words) into subsystem ``s``'s imem."""
        words = [w if isinstance(w, int) else encode(w) for w in program]
        self.write_words(s, MEM_IMEM, addr, words)

    def write_words(self, s, mem, addr, words):
        """Host write of packed words (formats in the module docstring) into memory ``mem`` of
        subsystem ``s`` from word ``addr``.

        Raises
        ------
        IndexError
            The words do not fit in the memory.
        """
        sub = self.subs[s]
        words = list(words)
        depth = self.depth(mem)
        if not 0 <= addr <= depth - len(words):
            raise IndexError(f"{len(words)} words at {addr} do not fit {MEMORIES[mem]} "
                             f"(depth {depth})")
        for i, word in enumerate(words):
            a = addr + i
            word = int(word)
            if not 0 <= word < 1 << word_bits(mem, self.params):
                raise ValueError(f"word {word:#x} is wider than {MEMORIES[mem]}'s "
                                 f"{word_bits(mem, self.params)} bits")
            if mem == MEM_IMEM:
                sub.imem[a] = word
            elif mem == MEM_WMEM:
                values, indices = unpack_w(word, self.params)
                sub.w_value[a], sub.w_index[a] = values, indices
            elif mem == MEM_PMEM:
                sub.p_bias[a], sub.p_mult[a], sub.p_shift[a] = unpack_post(word)
            else:
                sub.banks[mem - MEM_BANK0, a] = unpack_row(word, self.params["lanes"])

    def read_words(self, s, mem, addr=0, count=None):
        """Host read of packed words from memory ``mem`` of subsystem ``s``."""
        sub = self.subs[s]
        depth = self.depth(mem)
        count = depth - addr if count is None else count
        if not 0 <= addr <= depth - count:
            raise IndexError(f"{count} words at {addr} exceed {MEMORIES[mem]} (depth {depth})")
        out = []
        for a in range(addr, addr + count):
            if mem == MEM_IMEM:
                out.append(int(sub.imem[a]))
            elif mem == MEM_WMEM:
                out.append(pack_w(sub.w_value[a], sub.w_index[a], self.params))
            elif mem == MEM_PMEM:
                out.append(pack_post(sub.p_bias[a], sub.p_mult[a], sub.p_shift[a]))
            else:
                out.append(pack_row(sub.banks[mem - MEM_BANK0, a]))
        return out

    def depth(self, mem):
        """Depth in words of memory ``mem``."""
        p = self.params
        return {MEM_IMEM: p["imem_depth"], MEM_WMEM: p["wmem_depth"],
                MEM_PMEM: p["pmem_depth"]}.get(mem, p["bank_rows"])

    # execution ---------------------------------------------------------------------------------
    def start(self):
        """Start every subsystem at pc 0 (clears counters, state, error and ``row_error``)."""
        self.reset()
        self._clear_stats()
        for sub in self.subs:
            sub.state = RUNNING
            self._spend(sub.index, "issue", CYCLE_COSTS["issue_fill"])

    def run(self, seed=None, max_delay=0):
        """:meth:`start`, then execute until every subsystem has halted or stopped and no row is
        in flight; returns the list of :class:`Status`.

        Parameters
        ----------
        seed : int, optional
            ``None`` (default): the reference schedule, subsystems in order and every row
            delivered at once. Otherwise a random schedule from this seed: each round visits
            the subsystems in a random order, and every delivered row (local ones included)
            lands ``0 .. max_delay`` rounds later, in order per (sender, receiver) pair as on
            the ring. A program that obeys the hazard rule ends with the same memories under
            every schedule; tests use this to check the compiler.
        max_delay : int
            Largest delivery delay in rounds (with ``seed``).
        """
        self.start()
        self._rng = None if seed is None else np.random.default_rng(seed)
        self._max_delay = max_delay if seed is not None else 0
        self._flight = []          # (arrival round, sequence, receiver, bank, addr, row)
        self._flow_last = {}       # (sender, receiver) -> last arrival round
        self._round = self._seq = 0
        order = list(range(len(self.subs)))
        while any(sub.state == RUNNING for sub in self.subs) or self._flight:
            self._round += 1
            self.stats["rounds"] += 1
            progress = self._land()
            if self._rng is not None:
                order = list(self._rng.permutation(len(self.subs)))
            for s in order:
                sub = self.subs[s]
                if sub.state == RUNNING:
                    progress |= self._step(sub)
            if not progress and not self._flight:
                for sub in self.subs:
                    if sub.state == RUNNING:
                        sub.state, sub.error = ERROR, ERR_DEADLOCK
        return [sub.status for sub in self.subs]

    def _land(self):
        """Deliver the rows in flight whose round has come; True if any landed."""
        due = [f for f in self._flight if f[0] <= self._round]
        if not due:
            return False
        self._flight = [f for f in self._flight if f[0] > self._round]
        for _, _, d, bank, addr, row in sorted(due, key=lambda f: (f[0], f[1])):
            dest = self.subs[d]
            dest.banks[bank, addr] = row
            dest.counters[bank] += 1
        return True

    def _step(self, sub):
        """Execute one instruction of ``sub``; False when it is blocked on a WAIT."""
        p = self.params
        if sub.pc >= p["imem_depth"]:
            sub.state, sub.error = ERROR, ERR_PC
            return True
        word = int(sub.imem[sub.pc])
        code = check_word(word, p)
        if code:
            sub.state, sub.error = ERROR, code
            return True
        instr = decode(word, act_engine=p["act_engine"])
        if isinstance(instr, Wait):
            if sub.counters[instr.bank] < instr.count:
                return False
            sub.counters[instr.bank] -= instr.count
            pending = sorted(self._arrivals.get((sub.index, instr.bank), []))
            if instr.count:
                self._spend(sub.index, "wait", max(0, pending[instr.count - 1]
                                                   - self._t[sub.index]))
            self._arrivals[(sub.index, instr.bank)] = pending[instr.count:]
            self._spend(sub.index, "issue", CYCLE_COSTS["issue"])    # after the rows are in
        else:
            self._spend(sub.index, "issue", CYCLE_COSTS["issue"])
        if isinstance(instr, Halt):
            sub.state = HALTED
            self.stats["instructions"][sub.index] += 1
            self._spend(sub.index, "halt", max(0, self._last_row[sub.index]
                                               - self._t[sub.index]))
            self.stats["cycles"][sub.index] = self._t[sub.index]
            self.stats["total_cycles"] = max(self.stats["cycles"])
            return True
        elif isinstance(instr, Gemm):
            self._gemm(sub, instr)
        elif isinstance(instr, Act):
            self._act(sub, instr)
        elif isinstance(instr, Send):
            # a SEND to no subsystem reads no row (hw/chip/subsystem.py: its row count is 0
            # when mask == 0), so it costs what a SEND of 0 rows costs
            count = instr.count if instr.mask else 0
            self._check_hazard(sub, instr.s_bank, instr.s_addr, count)
            rows = sub.banks[instr.s_bank, instr.s_addr:instr.s_addr + count].copy()
            start = self._t[sub.index]
            lat = CYCLE_COSTS["send_latency"]
            self._deliver(sub, instr.mask, instr.r_bank, instr.r_addr, rows,
                          [start + i + lat for i in range(count)],
                          CYCLE_COSTS["send_per_row"])
            # every destination, its own node included, takes a ring flit per row
            # (hw/chip/subsystem.py: SEND rows all go through the injector)
            flits = CYCLE_COSTS["send_per_row"] * count * bin(instr.mask).count("1")
            self._spend(sub.index, "send", max(count + lat - 1, flits,
                                               self._port_free[sub.index] - start))
        self.stats["instructions"][sub.index] += 1
        sub.pc += 1
        return True

    def _gemm(self, sub, g):
        p = self.params
        n, m, macs = 1 << g.n_log2, 1 << g.m_log2, p["macs"]
        nz = g.k // m * n
        bpr = beats_per_row(g.k, g.n_log2, g.m_log2, macs)
        words = slice(g.w_addr, g.w_addr + g.o * bpr)
        values = sub.w_value[words].reshape(g.o, bpr * macs)[:, :nz]
        indices = sub.w_index[words].reshape(g.o, bpr * macs)[:, :nz]
        rows = slice(g.p_addr, g.p_addr + g.o)
        self._check_hazard(sub, g.x_bank, g.x_addr, g.k)
        x = sub.banks[g.x_bank, g.x_addr:g.x_addr + g.k]
        y, error = spu.spu_gemm(values, indices, n, m, x, sub.p_bias[rows], sub.p_mult[rows],
                                sub.p_shift[rows], bool(g.relu))
        sub.row_error |= bool(error.any())
        self.stats["macs"][sub.index] += g.o * nz * p["lanes"]
        issue, finish, release = gemm_cycles(g, p)
        start = self._t[sub.index]
        self._deliver(sub, g.mask, g.d_bank, g.d_addr, y,
                      [start + finish(r) for r in range(g.o)])
        self._spend(sub.index, "gemm", issue)
        # the sequencer waits for the SPU's last row (its pipeline drains): counted as "halt"
        # (draining the own last rows), the SPU's beats and X-load stalls stay in "gemm"
        self._spend(sub.index, "halt", release - issue)

    def _act(self, sub, a):
        self._check_hazard(sub, a.s_bank, a.s_addr, a.count)
        if a.op == ACT_ADD:
            self._check_hazard(sub, a.b_bank, a.b_addr, a.count)
        y, domain = act_slice(sub, a)
        sub.row_error |= bool(domain)
        sub.banks[a.d_bank, a.d_addr:a.d_addr + a.count] = y
        self.stats["act_elements"][sub.index] += a.count * self.params["lanes"]
        self._spend(sub.index, "act", act_cycles(a, self.params))

    def _check_hazard(self, sub, bank, addr, count):
        """Count a read of rows that still have a delivery in flight to them (the hazard rule
        broken; only visible with delayed deliveries)."""
        for flight in self._flight:
            if flight[2] == sub.index and flight[3] == bank and addr <= flight[4] < addr + count:
                self.stats["hazards"] += 1
                return

    def _deliver(self, sub, mask, bank, addr, rows, ready, per_row=None):
        """Deliver ``rows`` to every subsystem of ``mask``; ``ready[i]``: the cycle row ``i``
        leaves the sender (cycle model: a GEMM's local write lands 1 cycle later; a remote row,
        and a SEND's row to its own node, is injected when the sender's ring port is free,
        ``per_row`` port cycles per row and destination: ``flits_per_row`` for a GEMM's rows
        (default), ``send_per_row`` for SEND's,
        and lands ``hops * hop + ring_extra + ring_land`` cycles after injection, ``hops`` the
        ring's minimal route, :func:`golden.ring.route`; the own node's ``send_self_land``)."""
        s, nodes, c = sub.index, len(self.subs), CYCLE_COSTS
        dests = [d for d in range(nodes) if mask >> d & 1]
        for t in ready:                    # row by row, each to every destination in turn
            for d in dests:
                if d == s and per_row is None:       # a GEMM's own rows: the local write
                    arrive = t + 1
                else:
                    inject = max(t, self._port_free[s])
                    self._port_free[s] = inject + (c["flits_per_row"] if per_row is None
                                                   else per_row)
                    arrive = inject + (c["send_self_land"] if d == s else
                                       ring.route(s, d, nodes)[1] * c["hop"] + c["ring_extra"]
                                       + c["ring_land"])
                # a WAIT resumes on a ring row wait_resume cycles after it lands (own rows are
                # in before the GEMM that wrote them releases the sequencer: never a stall)
                self._arrivals.setdefault((d, bank), []).append(
                    arrive + (c["wait_resume"] if d != s else 0))
                self._last_row[s] = max(self._last_row[s], arrive)
        for d, dest in enumerate(self.subs):
            if not mask >> d & 1:
                continue
            key = "local_rows" if d == sub.index else "ring_rows"
            self.stats[key][sub.index] += len(rows)
            if not self._max_delay:
                dest.banks[bank, addr:addr + len(rows)] = rows
                dest.counters[bank] += len(rows)
                continue
            flow = (sub.index, d)
            for i, row in enumerate(np.array(rows, copy=True)):
                arrival = max(self._flow_last.get(flow, 0),
                              self._round + int(self._rng.integers(0, self._max_delay + 1)))
                self._flow_last[flow] = arrival
                self._seq += 1
                self._flight.append((arrival, self._seq, d, bank, addr + i, row))
