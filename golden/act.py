"""Golden integer kernels of the activation engine (``hw/act_engine.py``, ``docs/act_engine.md``).

Every kernel is integer arithmetic only (Python ints; shifts are arithmetic, i.e. floor
division by a power of two). Floats appear only in :func:`measure_errors`, which compares the
kernels with float64 references.

Formats
-------
- Input element: int8 code ``x``, real value ``x * 2**-fin``, ``fin`` in 0..7.
- Output element: int16 code ``y``, real value ``y * 2**-fout``, ``fout`` in 0..15, saturated
  to -32768..32767.
- LayerNorm ``gamma``: int16, real ``gamma * 2**-12`` (Q4.12); ``beta``: int16 in the output
  format (real ``beta * 2**-fout``).

Rounding helpers
----------------
``rshift_round(v, s)`` = ``(v + 2**(s-1)) >> s`` for ``s > 0`` (round half up, i.e. towards
+infinity on ties, for either sign), ``v`` for ``s == 0``, ``v << -s`` for ``s < 0``.
``sat16(v)`` clamps to -32768..32767.

Cores (shared by the element-wise and row-wise operations)
----------------------------------------------------------
- :func:`pow2_frac`: ``2**f`` for ``f`` in Q0.16, cubic Horner polynomial, floor after every
  product; result Q1.16 in 65536..131071; relative error <= 1.1e-4.
- :func:`exp_parts`: ``e**(x * 2**-fin) ~= P * 2**(n - 16)`` with ``z = x * LOG2E_Q20``
  (``LOG2E_Q20 = 1512775 = round(log2(e) * 2**20)``), ``n = z >> (20 + fin)``,
  ``f = (z >> (4 + fin)) & 0xFFFF`` (truncated), ``P = pow2_frac(f)``.
- :func:`recip_core`: ``M`` in ``2**15 .. 2**16 - 1`` (``m = M / 2**15`` in [1, 2)) ->
  ``Y ~= 2**31 / M`` (Q16 of ``1/m``): seed ``92521 - (30840 * M >> 15)`` (24/17 - 8/17 m),
  three Newton steps ``Y = Y * (2**17 - (M * Y >> 15)) >> 16``.
- :func:`isqrt_core`: ``M`` in ``2**14 .. 2**16 - 1`` (``m = M / 2**14`` in [1, 4)) ->
  ``Y ~= 2**23 / sqrt(M)`` (Q16 of ``1/sqrt(m)``): linear seed ``82844 - (75071 * M >> 16)``
  for ``M < 2**15``, ``58580 - (26542 * M >> 16)`` otherwise, three Newton steps
  ``S = Y*Y >> 16; T = M*S >> 14; Y = Y * (196608 - T) >> 17``.

Operations (codes in :data:`OP_CODES`)
--------------------------------------
gelu (0)
    ``GELU(x) = relu(x) - g(|x|)``, ``g(t) = t * Phi(-t)``. ``g`` is a 80-segment piecewise
    linear table on [0, 5) (:data:`GELU_TABLE`, Q0.16 at ``t = j/16``, ``g = 0`` for
    ``t >= 5``). ``tq = |x| << (7 - fin)`` (Q7), ``seg = tq >> 3``, ``fr = tq & 7``,
    ``g = G[seg] + ((G[seg+1] - G[seg]) * fr >> 3)`` (floor); ``W = (relu(x) << (16 - fin)) - g``;
    ``y = sat16(rshift_round(W, 16 - fout))``.
exp (1)
    ``(P, n) = exp_parts(x, fin)``, ``s = 16 - fout - n``: ``y = 32767`` if ``s <= 0``, ``0`` if
    ``s >= 18``, else ``sat16(rshift_round(P, s))``.
log2 (2)
    ``x <= 0``: ``y = -32768`` and the domain flag. Else ``e = bitlen(x) - 1``,
    ``i = (x << (6 - e)) & 63`` (the mantissa's 6 fraction bits, exact for int8),
    ``V = ((e - fin) << 16) + LOG2_TABLE[i]`` (``round(log2(1 + i/64) * 2**16)``),
    ``y = sat16(rshift_round(V, 16 - fout))``.
recip (3)
    ``x == 0``: ``y = 32767`` and the domain flag. Else ``a = |x|``, ``L = bitlen(a)``,
    ``Y = recip_core(a << (16 - L))``, ``s = 15 + L - fin - fout``, ``r = 0`` if ``s >= 18``
    else ``rshift_round(Y, s)`` (a left shift for ``s < 0``); ``y = sat16(-r if x < 0 else r)``
    (so ties round away from zero for negative ``x``).
softmax (4), along a row of ``n`` elements
    ``mx = max(x)``, ``d_i = x_i - mx`` (<= 0), ``(P_i, n_i) = exp_parts(d_i, fin)``,
    ``E_i = rshift_round(P_i, min(-n_i, 18))`` (Q16, 0..65536; 65536 for the maxima),
    ``S = sum(E_i)`` (>= 65536), ``L = bitlen(S)``, ``Y = recip_core(S >> (L - 16))``
    (truncating S to 16 significant bits),
    ``y_i = min(rshift_round(E_i * Y, 15 + L - fout), 32767)``.
layernorm (5), along a row of ``n`` elements, no epsilon
    ``Sx = sum(x)``, ``Sxx = sum(x*x)``, ``V = max(n*Sxx - Sx**2, 1)`` (``n**2`` times the
    variance, exact), ``D_i = n*x_i - Sx`` (``n`` times the deviation, exact). ``L = bitlen(V)``,
    ``k = (L - 15) >> 1`` (floor), ``M = V >> 2k`` (``V << -2k`` if ``k < 0``, truncating),
    ``Y = isqrt_core(M)``; ``y_i = sat16(rshift_round(D_i * Y * gamma_i, 35 + k - fout)
    + beta_i)``. Scale-invariant: ``fin`` does not matter. A zero-variance row gives
    ``D_i = 0``, hence ``y_i = sat16(beta_i)``.

Measured errors against float64 are in :data:`ERROR_BOUNDS` (checked by the tests) and
``docs/act_engine.md``.
"""

import math

from sparsehw.params import Param, ParamSpec, int_in, one_of

__all__ = ["OPS", "OP_CODES", "ROW_OPS", "GELU_TABLE", "LOG2_TABLE", "LOG2E_Q20",
           "rshift_round", "sat16", "pow2_steps", "pow2_frac", "exp_parts", "recip_core",
           "isqrt_core", "recip_steps", "isqrt_steps", "layernorm_scale",
           "gelu", "exp", "log2", "recip", "softmax", "layernorm", "run", "reference",
           "measure_errors", "ERROR_BOUNDS", "IBERT", "ACT_WORKLOAD", "PIPE_DEPTH", "SUM_STAGE",
           "SCALAR_CYCLES", "ROW_START_CYCLES"]


OPS = ("gelu", "exp", "log2", "recip", "softmax", "layernorm")
OP_CODES = {name: code for code, name in enumerate(OPS)}
ROW_OPS = ("softmax", "layernorm")

LOG2E_Q20 = 1512775
EXP_C = (45555, 14919, 5051)        # Q0.16 coefficients of 2**f - 1 = f(c1 + f(c2 + f c3))
RECIP_SEED = (92521, 30840)
ISQRT_SEED = ((82844, 75071), (58580, 26542))
NEWTON_STEPS = 3

# -- cycle constants of the RTL engine (hw/act_engine.py, docs/act_engine.md "Pipeline") -------
# Timing only (no numeric rule depends on them); the engine is built to them and the chip's
# cycle model (golden.chip.CYCLE_COSTS, act_*) is derived from them.
#: Register stages from the engine's beat register to its output FIFO (issue #14: 15 since each
#: multiply has a stage of its own, 13 with the first pipeline registers for ECP5 timing, 5
#: before): softmax's output path is the deepest (the per-lane reciprocal was as deep with its
#: three 3-stage Newton steps; since s31 its core is a table of ``|x|``, result at stage 9).
PIPE_DEPTH = 15
#: Stage at which softmax's sum pass has an element's ``E_i``; the row sum is complete
#: ``SUM_STAGE + 2`` cycles after the pass's last beat enters the pipeline.
SUM_STAGE = 11
#: Cycles per row of the engine's scalar step (the row's reciprocal or inverse square root on
#: a free-running pipeline, each multiply and each addition in a stage of its own; 11 and 16
#: with one multiply and one addition per stage, 3 before issue #14; layernorm's includes the
#: cycle its load statistics still settle in).
SCALAR_CYCLES = {"softmax": 16, "layernorm": 24}
#: Cycles from a row's last load beat to the first cycle of its sum pass (softmax) or scalar
#: step (layernorm) when the engine is otherwise idle: the row side's wait state (the row
#: buffers are double, so a row is handed from the load side to the row side).
ROW_START_CYCLES = 1

#: g(j/16) * 2**16 rounded, j = 0..80, g(t) = t * Phi(-t) (GELU(x) = relu(x) - g(|x|)).
GELU_TABLE = (
    0, 1946, 3689, 5230, 6575, 7728, 8696, 9487, 10110, 10576, 10895, 11079, 11139, 11089,
    10940, 10706, 10398, 10027, 9606, 9146, 8655, 8144, 7620, 7093, 6567, 6050, 5546, 5060,
    4594, 4152, 3735, 3345, 2982, 2647, 2339, 2058, 1803, 1572, 1366, 1181, 1017, 873, 745,
    634, 537, 453, 381, 318, 265, 220, 182, 150, 123, 100, 82, 66, 53, 43, 34, 27, 22, 17, 14,
    11, 8, 6, 5, 4, 3, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0)
GELU_SEGMENTS = 80
#: round(log2(1 + i/64) * 2**16), i = 0..63.
LOG2_TABLE = (
    0, 1466, 2909, 4331, 5732, 7112, 8473, 9814, 11136, 12440, 13727, 14996, 16248, 17484,
    18704, 19909, 21098, 22272, 23433, 24579, 25711, 26830, 27936, 29029, 30109, 31178, 32234,
    33279, 34312, 35334, 36346, 37346, 38336, 39316, 40286, 41246, 42196, 43137, 44068, 44990,
    45904, 46809, 47705, 48593, 49472, 50344, 51207, 52063, 52911, 53751, 54584, 55410, 56229,
    57040, 57845, 58643, 59434, 60219, 60997, 61769, 62534, 63294, 64047, 64794)

#: I-BERT (Kim et al., ICML 2021) figures, from the published formulas evaluated exactly.
IBERT = {"gelu": {"max_abs": 0.018, "rms": 0.0082, "range": "[-4, 4]"},
         "exp": {"max_rel": 0.0031, "range": "(-ln 2, 0]"}}

#: Upper bounds of the measured errors (see measure_errors); the tests hold the kernels to them.
ERROR_BOUNDS = {
    "gelu": {"max_abs": 5e-4, "rms": 2e-4},         # fin=5, fout=12, every int8 code
    "exp_core": {"max_rel": 1.2e-4},                 # 2**f on the (-ln 2, 0] exponents
    "exp": {"max_rel": 2e-4, "max_abs": 8e-5},       # fout=14 (see measure_errors)
    "log2": {"max_abs": 1.5e-4},                     # fout=12, x in 1..127, every fin
    "recip": {"max_rel": 2e-5},                      # recip_core over every M
    "recip_op": {"max_abs": 2.5e-3},                 # fin=0, fout=8 (rounding 2**-9)
    "isqrt": {"max_rel": 4e-5},                      # isqrt_core over every M
    "softmax": {"max_abs": 5e-5, "sum": 4e-4},       # fout=15, rows of 64, fin=4
    "layernorm": {"max_abs": 6e-4},                  # fout=10, gamma=1, beta=0, rows of 64
}


#: Knobs of ``sparsehw perf act_engine`` (rules may depend on the generation parameters).
ACT_WORKLOAD = ParamSpec(
    Param("op", "gelu", one_of(*OPS), doc="operation measured"),
    Param("n", 0, lambda v: int_in(0, v["max_row"] if v["op"] in ROW_OPS else 65535),
          doc="elements per command; 0 = max_row (row-wise) or 1024 (element-wise)",
          allowed="0..max_row (softmax, layernorm) or 0..65535"),
    Param("rows", 8, int_in(1, 1024), doc="commands back to back"),
    kind="workload knob",
)


# -- helpers -------------------------------------------------------------------------------------

def rshift_round(v, s):
    """``(v + 2**(s-1)) >> s`` for ``s > 0``; ``v`` for 0; ``v << -s`` for ``s < 0``."""
    if s > 0:
        return (v + (1 << (s - 1))) >> s
    return v << -s


def sat16(v):
    """Clamp to the int16 range."""
    return max(-32768, min(32767, v))


def _check_int8(x):
    x = int(x)
    if not -128 <= x <= 127:
        raise ValueError(f"x must be an int8 in -128..127, not {x!r}")
    return x


def _check_fmt(fin, fout):
    if not (isinstance(fin, int) and 0 <= fin <= 7):
        raise ValueError(f"fin must be an integer in 0..7, not {fin!r}")
    if not (isinstance(fout, int) and 0 <= fout <= 15):
        raise ValueError(f"fout must be an integer in 0..15, not {fout!r}")


# -- cores ---------------------------------------------------------------------------------------

def pow2_steps(f):
    """The Horner values of :func:`pow2_frac` in order: ``t1 = c2 + (c3*f >> 16)``,
    ``t2 = c1 + (t1*f >> 16)`` and ``t3 = t2*f >> 16`` (the RTL registers each, a constant
    added after each product; their widths follow the ranges over every ``f``)."""
    c1, c2, c3 = EXP_C
    t1 = c2 + ((c3 * f) >> 16)
    t2 = c1 + ((t1 * f) >> 16)
    return t1, t2, (t2 * f) >> 16


def pow2_frac(f):
    """``2**(f / 2**16) * 2**16`` for ``f`` in 0..65535 (Q1.16 result, 65536..131071):
    ``65536 + ((c1 + ((c2 + (c3 f >> 16)) f >> 16)) f >> 16)`` (:func:`pow2_steps`)."""
    return 65536 + pow2_steps(f)[-1]


def exp_parts(x, fin):
    """``e**(x * 2**-fin) ~= P * 2**(n - 16)``: returns ``(P, n)``, ``P`` from :func:`pow2_frac`."""
    z = x * LOG2E_Q20
    n = z >> (20 + fin)
    f = (z >> (4 + fin)) & 0xFFFF
    return pow2_frac(f), n


def recip_steps(M):
    """The values of :func:`recip_core` in order: the seed ``y``, then per Newton step
    ``u = 2**17 - (M*y >> 15)`` and the new ``y`` (the RTL registers each; their widths follow
    the ranges over every ``M``)."""
    a, b = RECIP_SEED
    y = a - ((b * M) >> 15)
    values = {"y": [y], "u": []}
    for _ in range(NEWTON_STEPS):
        u = (1 << 17) - ((M * y) >> 15)
        y = (y * u) >> 16
        values["u"].append(u)
        values["y"].append(y)
    return values


def recip_core(M):
    """``~2**31 / M`` for ``M`` in ``2**15..2**16-1`` (Q16 of ``1/m``, ``m = M/2**15``)."""
    return recip_steps(M)["y"][-1]


def isqrt_steps(M):
    """The values of :func:`isqrt_core` in order: the seed ``y``, then per Newton step
    ``S = y*y >> 16``, ``T = 3*2**16 - (M*S >> 14)`` and the new ``y = y*T >> 17``."""
    a, b = ISQRT_SEED[0] if M < (1 << 15) else ISQRT_SEED[1]
    y = a - ((b * M) >> 16)
    values = {"y": [y], "S": [], "T": []}
    for _ in range(NEWTON_STEPS):
        s = (y * y) >> 16
        t = 3 * 65536 - ((M * s) >> 14)
        y = (y * t) >> 17
        values["S"].append(s)
        values["T"].append(t)
        values["y"].append(y)
    return values


def isqrt_core(M):
    """``~2**23 / sqrt(M)`` for ``M`` in ``2**14..2**16-1`` (Q16 of ``1/sqrt(m)``, ``m = M/2**14``)."""
    return isqrt_steps(M)["y"][-1]


# -- element-wise operations ---------------------------------------------------------------------

def gelu(x, fin, fout):
    """GELU of one int8 code: ``(y, domain)`` (``domain`` is always 0)."""
    x = _check_int8(x)
    _check_fmt(fin, fout)
    tq = abs(x) << (7 - fin)
    seg = tq >> 3
    if seg >= GELU_SEGMENTS:
        g = 0
    else:
        g0, g1 = GELU_TABLE[seg], GELU_TABLE[seg + 1]
        g = g0 + (((g1 - g0) * (tq & 7)) >> 3)
    w = (max(x, 0) << (16 - fin)) - g
    return sat16(rshift_round(w, 16 - fout)), 0


def exp(x, fin, fout):
    """``e**x`` of one int8 code: ``(y, 0)``."""
    x = _check_int8(x)
    _check_fmt(fin, fout)
    p, n = exp_parts(x, fin)
    s = 16 - fout - n
    if s <= 0:
        return 32767, 0
    if s >= 18:
        return 0, 0
    return sat16(rshift_round(p, s)), 0


def log2(x, fin, fout):
    """``log2 x`` of one int8 code: ``(y, domain)``; ``x <= 0`` gives ``(-32768, 1)``."""
    x = _check_int8(x)
    _check_fmt(fin, fout)
    if x <= 0:
        return -32768, 1
    e = x.bit_length() - 1
    i = (x << (6 - e)) & 63
    v = ((e - fin) << 16) + LOG2_TABLE[i]
    return sat16(rshift_round(v, 16 - fout)), 0


def recip(x, fin, fout):
    """``1/x`` of one int8 code: ``(y, domain)``; ``x == 0`` gives ``(32767, 1)``."""
    x = _check_int8(x)
    _check_fmt(fin, fout)
    if x == 0:
        return 32767, 1
    a = abs(x)
    length = a.bit_length()
    y = recip_core(a << (16 - length))
    s = 15 + length - fin - fout
    r = 0 if s >= 18 else rshift_round(y, s)
    return sat16(-r if x < 0 else r), 0


# -- row-wise operations -------------------------------------------------------------------------

def softmax(row, fin, fout):
    """Softmax of a row of int8 codes: a list of ``n`` int16 codes (``fout`` fraction bits)."""
    row = [_check_int8(v) for v in row]
    _check_fmt(fin, fout)
    if not row:
        raise ValueError("a softmax row needs at least one element")
    es, length, y = softmax_scale(row, fin)
    return [min(rshift_round(e * y, 15 + length - fout), 32767) for e in es]


def softmax_scale(row, fin):
    """The row scalars of :func:`softmax` for integer codes ``row``: ``(es, length, y)``, the
    exponentials ``E_i`` (65536 for a maximum), the bit length of their sum ``S`` and
    ``y = recip_core(S >> (length - 16))``; element ``i`` is then
    ``min(rshift_round(E_i * y, 15 + length - fout), 32767)``."""
    mx = max(row)
    es = []
    for v in row:
        p, n = exp_parts(v - mx, fin)
        es.append(rshift_round(p, min(-n, 18)))
    length = sum(es).bit_length()
    return es, length, recip_core(sum(es) >> (length - 16))


def layernorm_scale(row):
    """The row statistics of :func:`layernorm` for integer codes ``row``: ``(sx, k, y)``, the sum
    ``sx``, the shift ``k`` that brings ``var = max(n * sum(x*x) - sx**2, 1)`` to 15..16 bits
    (``M = var >> 2k``, a left shift for negative ``k``) and ``y = isqrt_core(M)``; element ``i``
    is then ``rshift_round((n * x_i - sx) * y * gamma_i, 35 + k - fout) + beta_i``, saturated."""
    n = len(row)
    sx = sum(row)
    var = max(n * sum(v * v for v in row) - sx * sx, 1)
    k = (var.bit_length() - 15) >> 1
    return sx, k, isqrt_core(var >> (2 * k) if k >= 0 else var << (-2 * k))


def layernorm(row, gamma, beta, fout):
    """LayerNorm of a row of int8 codes with per-element ``gamma`` (Q4.12) and ``beta``
    (output format): a list of ``n`` int16 codes."""
    row = [_check_int8(v) for v in row]
    _check_fmt(0, fout)
    n = len(row)
    if n == 0 or len(gamma) != n or len(beta) != n:
        raise ValueError("layernorm needs a non-empty row and one gamma and beta per element")
    for name, values in (("gamma", gamma), ("beta", beta)):
        for v in values:
            if not -32768 <= int(v) <= 32767:
                raise ValueError(f"{name} must be int16, not {v!r}")
    sx, k, y = layernorm_scale(row)
    return [sat16(rshift_round((n * v - sx) * y * int(g), 35 + k - fout) + int(b))
            for v, g, b in zip(row, gamma, beta)]


_ELEMENTWISE = {"gelu": gelu, "exp": exp, "log2": log2, "recip": recip}


def run(op, xs, *, fin=0, fout=0, gamma=None, beta=None):
    """One command of the engine: ``(ys, domain)`` lists for the ``n = len(xs)`` elements.

    ``domain[i]`` is 1 where an element is outside the operation's domain (log2 of x <= 0,
    recip of 0); row-wise operations never set it.
    """
    if op in _ELEMENTWISE:
        out = [_ELEMENTWISE[op](v, fin, fout) for v in xs]
        return [y for y, _ in out], [d for _, d in out]
    if op == "softmax":
        return softmax(xs, fin, fout), [0] * len(xs)
    if op == "layernorm":
        return layernorm(xs, gamma, beta, fout), [0] * len(xs)
    raise ValueError(f"op must be one of {', '.join(OPS)}, not {op!r}")


# -- float64 references and measured errors (floats only here) ----------------------------------

def reference(op, xs, *, fin=0, gamma=None, beta_real=None):
    """float64 reference of ``op`` on the real inputs ``xs * 2**-fin`` (``gamma``, ``beta_real``
    in real units for layernorm)."""
    import numpy as np
    v = np.asarray(xs, dtype=np.float64) * 2.0 ** -fin
    if op == "gelu":
        return np.array([t * 0.5 * math.erfc(-t / math.sqrt(2)) for t in v])
    if op == "exp":
        return np.exp(v)
    if op == "log2":
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log2(v)
    if op == "recip":
        with np.errstate(divide="ignore"):
            return 1.0 / v
    if op == "softmax":
        e = np.exp(v - v.max())
        return e / e.sum()
    if op == "layernorm":
        sd = v.std()
        xhat = (v - v.mean()) / sd if sd > 0 else np.zeros_like(v)
        return xhat * np.asarray(gamma, dtype=np.float64) + np.asarray(beta_real, np.float64)
    raise ValueError(f"op must be one of {', '.join(OPS)}, not {op!r}")


def measure_errors(seed=0):
    """Errors of the kernels against float64 on their documented ranges (see ERROR_BOUNDS)."""
    import numpy as np
    out = {}
    codes = list(range(-128, 128))
    fin, fout = 5, 12
    ys = np.array([gelu(v, fin, fout)[0] for v in codes]) / 2.0 ** fout
    err = ys - reference("gelu", codes, fin=fin)
    out["gelu"] = {"max_abs": float(np.abs(err).max()), "rms": float(np.sqrt((err ** 2).mean())),
                   "range": "int8 codes at fin=5 ([-4, 3.97]), fout=12"}
    # exp core on (-ln 2, 0]: d on the Q20 grid (fin=... via d / 2**20 with fin handled as 7 +
    # extra bits would exceed int8), evaluated through pow2_frac directly on z = d * log2 e.
    ds = np.linspace(-math.log(2), 0, 4097)[1:]
    rel = []
    for d in ds:
        z = int(round(d * math.log2(math.e) * 2 ** 16))       # exact Q16 exponent of 2
        n, f = z >> 16, z & 0xFFFF
        val = pow2_frac(f) * 2.0 ** (n - 16)
        rel.append(val / 2.0 ** (z / 2 ** 16) - 1)
    out["exp_core"] = {"max_rel": float(np.abs(rel).max()), "range": "(-ln 2, 0]"}
    xs = list(range(-88, 1))               # x * 2**-7 in (-ln 2, 0]
    ys = np.array([exp(v, 7, 14)[0] for v in xs]) / 2.0 ** 14
    ref = reference("exp", xs, fin=7)
    rel = float(np.abs(ys / ref - 1).max())
    xs = list(range(-128, 1))              # [-4, 0]
    ys = np.array([exp(v, 5, 14)[0] for v in xs]) / 2.0 ** 14
    ref = reference("exp", xs, fin=5)
    out["exp"] = {"max_rel": rel, "max_abs": float(np.abs(ys - ref).max()),
                  "rms": float(np.sqrt(((ys - ref) ** 2).mean())),
                  "range": "max_rel: codes -88..0 at fin=7 ((-ln 2, 0]); abs/rms: codes "
                           "-128..0 at fin=5 ([-4, 0]); fout=14"}
    errs = []
    for f_in in range(8):
        xs = list(range(1, 128))
        ys = np.array([log2(v, f_in, 12)[0] for v in xs]) / 2.0 ** 12
        errs.append(ys - reference("log2", xs, fin=f_in))
    errs = np.concatenate(errs)
    out["log2"] = {"max_abs": float(np.abs(errs).max()), "rms": float(np.sqrt((errs ** 2).mean())),
                   "range": "int8 codes 1..127, fin=0..7, fout=12"}
    ms = np.arange(1 << 15, 1 << 16)
    yr = np.array([recip_core(int(m)) for m in ms]) / (2.0 ** 31 / ms) - 1
    out["recip"] = {"max_rel": float(np.abs(yr).max()), "range": "recip_core, every M"}
    xs = [v for v in range(-128, 128) if v]
    ys = np.array([recip(v, 0, 8)[0] for v in xs]) / 2.0 ** 8
    ref = reference("recip", xs, fin=0)
    out["recip_op"] = {"max_abs": float(np.abs(ys - ref).max()),
                       "rms": float(np.sqrt(((ys - ref) ** 2).mean())),
                       "range": "int8 codes != 0, fin=0, fout=8"}
    ms = np.arange(1 << 14, 1 << 16)
    yr = np.array([isqrt_core(int(m)) for m in ms]) / (2.0 ** 23 / np.sqrt(ms)) - 1
    out["isqrt"] = {"max_rel": float(np.abs(yr).max()), "range": "isqrt_core, every M"}
    rng = np.random.default_rng(seed)
    sm_err, sm_sum, ln_err = [], [], []
    for _ in range(200):
        row = rng.integers(-128, 128, size=64).tolist()
        ys = np.array(softmax(row, 4, 15)) / 2.0 ** 15
        sm_err.append(ys - reference("softmax", row, fin=4))
        sm_sum.append(ys.sum() - 1)
        g = [4096] * 64
        b = [0] * 64
        ys = np.array(layernorm(row, g, b, 10)) / 2.0 ** 10
        ln_err.append(ys - reference("layernorm", row, gamma=[1.0] * 64, beta_real=[0.0] * 64))
    sm_err, ln_err = np.concatenate(sm_err), np.concatenate(ln_err)
    out["softmax"] = {"max_abs": float(np.abs(sm_err).max()),
                      "rms": float(np.sqrt((sm_err ** 2).mean())),
                      "sum": float(np.abs(sm_sum).max()),
                      "range": "200 random rows of 64 int8 codes, fin=4, fout=15"}
    out["layernorm"] = {"max_abs": float(np.abs(ln_err).max()),
                        "rms": float(np.sqrt((ln_err ** 2).mean())),
                        "range": "200 random rows of 64 int8 codes, gamma=1, beta=0, fout=10"}
    return out
