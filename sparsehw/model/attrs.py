"""TeSA: every tensor carries a sparsity attribute and a precision attribute (SparTA's
Tensor-with-Sparsity-Attribute).

Sparsity (:class:`Sparsity`)
    ``n:m`` (keep ``n`` of every ``m`` consecutive weights along the reduction axis, golden.nm's
    magnitude rule; ``1:1`` is dense), ``dead`` (pruned channels of the last axis: for an
    activation its features, for a weight its output columns, which removes the column and its
    bias entry), ``dead_in`` (weights only: pruned rows, i.e. input channels), and, once
    materialised (:func:`sparsehw.model.propagate.materialise`), the element ``mask`` of a weight.
Precision (:class:`Precision`)
    Integer with ``bits`` (8 by default; 2..8 stored in int8 containers, symmetric
    ``[-(2**(bits-1)-1), 2**(bits-1)-1]``).

Users set them per layer (:class:`LayerSetting`) with glob patterns on node names or layer labels
(``layer.0.intermediate.dense``), from the command line (``--nm 2:4`` = every weight GEMM) or a
TOML file (:func:`load_config`)::

    [[layer]]
    match = "*intermediate.dense"   # fnmatch pattern on the ONNX node name or the layer label
    nm = "2:4"                      # N:M of the weight
    bits = 8                        # weight precision
    act_bits = 8                    # precision of the GEMM's input activation
    prune_out = [0, 7]              # pruned output channels
    prune_in = []                   # pruned input channels (weight rows)

Two settings on one tensor are resolved as SparTA does: the pruned elements are the union (the
sparser N:M, both masks applied), the precision is the lower one.
"""

import fnmatch
from dataclasses import dataclass, field, replace

from sparsehw.golden import nm as gnm


__all__ = ["Precision", "Sparsity", "TensorAttr", "LayerSetting", "parse_nm", "load_config",
           "ConfigError"]


class ConfigError(ValueError):
    """A malformed attribute setting (the message names the key and the value)."""


@dataclass(frozen=True)
class Precision:
    """Integer precision of a tensor."""

    bits: int = 8

    def __post_init__(self):
        if not isinstance(self.bits, int) or isinstance(self.bits, bool):
            raise ConfigError(f"bits must be an integer, not {self.bits!r}")
        if not 2 <= self.bits <= 8:
            raise ConfigError(f"bits must be in 2..8, not {self.bits}")

    def lower(self, other):
        """Conflict resolution: the lower precision."""
        return self if self.bits <= other.bits else other

    def __str__(self):
        return f"int{self.bits}"


@dataclass(frozen=True)
class Sparsity:
    """Sparsity attribute (see the module docstring)."""

    n: int = 1
    m: int = 1
    dead: frozenset = frozenset()
    dead_in: frozenset = frozenset()

    def union(self, other):
        """Conflict resolution: the union of the pruned elements (the sparser N:M)."""
        n, m = (self.n, self.m) if self.n * other.m <= other.n * self.m else (other.n, other.m)
        return Sparsity(n, m, self.dead | other.dead, self.dead_in | other.dead_in)

    @property
    def kind(self):
        if self.dead or self.dead_in:
            return "channels" if self.n == self.m else "nm+channels"
        return "dense" if self.n == self.m else "nm"

    def describe(self, channels=None, rows=None):
        parts = [] if self.n == self.m else [f"{self.n}:{self.m}"]
        if self.dead:
            of = f"/{channels}" if channels else ""
            parts.append(f"{len(self.dead)}{of} channels pruned")
        if self.dead_in:
            of = f"/{rows}" if rows else ""
            parts.append(f"{len(self.dead_in)}{of} input rows pruned")
        return ", ".join(parts) or "dense"


@dataclass(frozen=True)
class TensorAttr:
    """The TeSA pair of one tensor."""

    sparsity: Sparsity = field(default_factory=Sparsity)
    precision: Precision = field(default_factory=Precision)

    def merge(self, other):
        return TensorAttr(self.sparsity.union(other.sparsity),
                          self.precision.lower(other.precision))

    def with_(self, **kw):
        return replace(self, **kw)


def parse_nm(text):
    """``"2:4"`` -> ``(2, 4)``, checked with golden.nm's rules (``m`` in 1..32 a power of two,
    ``1 <= n <= m``) and the SPU's (``n`` a power of two)."""
    try:
        n, m = (int(v) for v in str(text).split(":"))
    except ValueError:
        raise ConfigError(f"nm must be N:M (e.g. 2:4), not {text!r}") from None
    try:
        n, m = gnm.check_nm(n, m)
    except ValueError as exc:
        raise ConfigError(f"nm {text}: {exc}") from None
    if n & (n - 1):
        raise ConfigError(f"nm {text}: n must be a power of two (the SPU codes log2 n), not {n}")
    return n, m


@dataclass(frozen=True)
class LayerSetting:
    """User attributes for the layers whose node name or label matches ``match``."""

    match: str = "*"
    nm: tuple = None
    bits: int = None
    act_bits: int = None
    prune_out: tuple = ()
    prune_in: tuple = ()

    def matches(self, op):
        return fnmatch.fnmatchcase(op.name, self.match) or \
            (op.attrs.get("label") is not None and
             fnmatch.fnmatchcase(op.attrs["label"], self.match))

    @classmethod
    def from_dict(cls, entry):
        known = {"match", "nm", "bits", "act_bits", "prune_out", "prune_in"}
        if not isinstance(entry, dict):
            raise ConfigError(f"a [[layer]] entry must be a table, not {entry!r}")
        unknown = set(entry) - known
        if unknown:
            raise ConfigError(f"unknown key {sorted(unknown)[0]!r} in [[layer]]; known: "
                              f"{', '.join(sorted(known))}")
        match = entry.get("match", "*")
        if not isinstance(match, str):
            raise ConfigError(f"match must be a string, not {match!r}")
        nm = parse_nm(entry["nm"]) if "nm" in entry else None
        for key in ("bits", "act_bits"):
            if key in entry:
                Precision(entry[key])
        for key in ("prune_out", "prune_in"):
            values = entry.get(key, [])
            if not isinstance(values, list) or not all(
                    isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
                raise ConfigError(f"{key} must be a list of channel indices >= 0, not {values!r}")
        return cls(match=match, nm=nm, bits=entry.get("bits"), act_bits=entry.get("act_bits"),
                   prune_out=tuple(entry.get("prune_out", [])),
                   prune_in=tuple(entry.get("prune_in", [])))


def load_config(path):
    """Read a TOML attribute file: a list of :class:`LayerSetting` (``[[layer]]`` tables)."""
    import tomllib
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path} is not valid TOML: {exc}") from None
    unknown = set(data) - {"layer"}
    if unknown:
        raise ConfigError(f"config {path}: unknown table {sorted(unknown)[0]!r}; expected "
                          "[[layer]] entries")
    return [LayerSetting.from_dict(e) for e in data.get("layer", [])]
