"""Golden model of the FP32 multiply-add unit: numpy float32 ``a*b`` then ``+c``.

Rules: IEEE-754 binary32, two roundings (the product is rounded to nearest even, then the sum),
subnormals are kept (no flush to zero: numpy on x86 uses SSE without FTZ/DAZ), signed zeros follow
IEEE (``x + (-x) = +0`` in round-to-nearest, ``-0 + -0 = -0``), overflow gives a signed infinity,
``inf * 0`` and ``inf + -inf`` are NaN. Every NaN result is the canonical quiet NaN :data:`QNAN`
(``0x7FC00000``: sign 0, quiet bit only), whatever the operands' payloads: numpy's NaN payloads
and signs follow the host (x86 gives ``0xFFC00000``), so :func:`canonical` maps every NaN to
:data:`QNAN` and :func:`fp32_mac_bits` returns the hardware's exact bits.
"""

import numpy as np


__all__ = ["QNAN", "bits", "from_bits", "fp32_mul", "fp32_add", "fp32_mac", "fp32_mac_bits",
           "canonical", "same"]


#: The canonical quiet NaN the hardware returns.
QNAN = 0x7FC00000


def bits(x):
    """float32 value(s) -> uint32 bit pattern(s) (as Python int for a scalar)."""
    a = np.asarray(x, dtype=np.float32).view(np.uint32)
    return int(a) if a.ndim == 0 else a


def from_bits(b):
    """uint32 bit pattern(s) -> float32."""
    a = np.asarray(b, dtype=np.uint32).view(np.float32)
    return a[()] if a.ndim == 0 else a


def fp32_mul(a, b):
    with np.errstate(all="ignore"):
        return np.float32(np.float32(a) * np.float32(b))


def fp32_add(a, b):
    with np.errstate(all="ignore"):
        return np.float32(np.float32(a) + np.float32(b))


def fp32_mac(a, b, c):
    """``float32(float32(a*b) + c)``: a multiply then an add, each rounded to nearest even."""
    return fp32_add(fp32_mul(a, b), c)


def canonical(x_bits):
    """``x_bits`` (a float32 bit pattern), with any NaN replaced by :data:`QNAN`."""
    x_bits = int(x_bits)
    return QNAN if (x_bits & 0x7F800000) == 0x7F800000 and x_bits & 0x7FFFFF else x_bits


def fp32_mac_bits(a_bits, b_bits, c_bits):
    """The exact result bits of ``fp32_mac`` for operand bits: :func:`fp32_mac`, NaN canonical."""
    return canonical(bits(fp32_mac(from_bits(a_bits), from_bits(b_bits), from_bits(c_bits))))


def same(x_bits, y_bits):
    """Bit-exact equality of two float32 bit patterns, any NaN equal to any NaN."""
    x, y = from_bits(x_bits), from_bits(y_bits)
    if np.isnan(x) or np.isnan(y):
        return bool(np.isnan(x) and np.isnan(y))
    return int(x_bits) == int(y_bits)
