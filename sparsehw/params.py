"""Generation parameters: one specification per block, below every other layer.

A block declares its parameters once, as a :class:`ParamSpec` of :class:`Param`. The spec

- validates (one message style everywhere: ``NAME must be ALLOWED, not VALUE``; ``TypeError`` for
  a value of the wrong type, ``ValueError`` for a value out of range), without building anything;
- holds the defaults once;
- renders the ``allowed`` text that ``sparsehw list`` shows;
- converts command-line strings (``-p lanes=8``).

The component (``hw/``), the golden model's checks (``golden/``), the registry entry
(``sparsehw/families/``) and the perf workloads all use the same spec::

    SPU_PARAMS = ParamSpec(
        Param("lanes", 4, int_in(1, 64), doc="batch columns in parallel"),
        Param("max_m", 32, pow2_in(1, 32)),
        Param("max_k", 128, lambda v: pow2_in(max(v["max_m"], v["act_rows"]), 65536)),
    )
    values = SPU_PARAMS.validate(lanes=8)        # {"lanes": 8, "max_m": 32, ...}

A rule may depend on parameters declared before it: pass a function of the values validated so
far that returns the rule.
"""

import numbers
from dataclasses import dataclass, field
from typing import Any, Callable


__all__ = ["Rule", "Param", "ParamSpec", "int_in", "pow2_in", "multiple_of", "float_in", "one_of",
           "boolean", "check", "INT"]


#: The types an integer rule accepts: Python ints and numpy integers (never ``bool``).
INT = (int, numbers.Integral)


@dataclass(frozen=True)
class Rule:
    """What a value must be: a type, a predicate and the words for it.

    Parameters
    ----------
    allowed : str
        The words for what is allowed, as they follow "must be" (``"an integer in 1..64"``).
    ok : callable
        ``ok(value) -> bool`` for a value of the right type.
    types : tuple of type
        Accepted Python types (``bool`` is never an ``int`` here).
    """
    allowed: str
    ok: Callable
    types: tuple = INT

    def check(self, name, value):
        """Return ``value`` if it obeys the rule; raise ``TypeError``/``ValueError`` if not."""
        wrong_type = not isinstance(value, self.types) or (
            isinstance(value, bool) and bool not in self.types)
        if wrong_type:
            raise TypeError(f"{name} must be {self.allowed}, not {value!r}")
        if not self.ok(value):
            raise ValueError(f"{name} must be {self.allowed}, not {value!r}")
        return value


def int_in(low, high=None):
    """An integer in ``low..high`` (no upper bound when ``high`` is None)."""
    if high is None:
        return Rule(f"an integer >= {low}", lambda v: v >= low)
    return Rule(f"an integer in {low}..{high}", lambda v: low <= v <= high)


def pow2_in(low, high):
    """A power of two in ``low..high``."""
    return Rule(f"a power of two in {low}..{high}",
                lambda v: low <= v <= high and v > 0 and v & (v - 1) == 0)


def multiple_of(step, high=None):
    """A positive multiple of ``step`` (up to ``high`` when given)."""
    if high is None:
        return Rule(f"a positive multiple of {step}", lambda v: v >= step and v % step == 0)
    return Rule(f"a multiple of {step} in {step}..{high}",
                lambda v: step <= v <= high and v % step == 0)


def float_in(low, high):
    """A number (``float`` or ``int``) in ``low..high``."""
    return Rule(f"a number in {low}..{high}", lambda v: low <= v <= high, (float, int))


def one_of(*choices):
    """One of ``choices`` (all of one type)."""
    types = tuple({type(c) for c in choices})
    return Rule(f"one of {', '.join(map(repr, choices))}", lambda v: v in choices, types)


def boolean():
    """``True`` or ``False`` (0 and 1 are accepted as integers)."""
    return Rule("a boolean", lambda v: v in (0, 1), (bool, int))


def check(name, value, rule):
    """Validate one value against a rule outside any spec (run-time workloads, helpers)."""
    return rule.check(name, value)


@dataclass(frozen=True)
class Param:
    """One generation parameter (or workload knob).

    Parameters
    ----------
    name : str
        Keyword of the component and of ``-p NAME=VALUE``.
    default
        Default value (validated like any other value).
    rule : Rule or callable
        A :class:`Rule`, or ``rule(values) -> Rule`` when the range depends on parameters declared
        earlier in the spec (``values`` holds those, validated).
    doc : str
        What the parameter means, shown by ``sparsehw list``.
    allowed : str or None
        Words for ``sparsehw list`` when ``rule`` is a function (defaults to its name).
    """
    name: str
    default: Any
    rule: Any
    doc: str = ""
    allowed: str = None

    def rule_for(self, values):
        return self.rule(values) if callable(self.rule) and not isinstance(self.rule, Rule) \
            else self.rule

    @property
    def text(self):
        """What is allowed, in words (the rule's own words unless it depends on others)."""
        if self.allowed is not None:
            return self.allowed
        if isinstance(self.rule, Rule):
            return self.rule.allowed
        return "see the block's documentation"

    @property
    def type(self):
        rule = self.rule if isinstance(self.rule, Rule) else None
        # a rule that depends on other parameters is not known here: the default's type says
        # how to read the command line (``-p act_engine=False`` is a boolean, not an integer)
        types = rule.types if rule else ((bool,) if isinstance(self.default, bool) else (int,))
        if bool in types and int in types:
            return bool
        return types[0]

    def convert(self, text):
        """Convert a command-line string to this parameter's type (no range check yet)."""
        if not isinstance(text, str):
            return text
        kind = self.type
        stripped = text.strip()
        if kind is bool:
            lowered = stripped.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"{self.name} must be a boolean (0/1/true/false), not {text!r}")
        if kind is int:
            try:
                return int(stripped, 0)
            except ValueError:
                raise ValueError(f"{self.name} must be {self.text}, not {text!r}") from None
        if kind is float:
            try:
                return float(stripped)
            except ValueError:
                raise ValueError(f"{self.name} must be {self.text}, not {text!r}") from None
        return stripped

    def describe(self):
        return {"name": self.name, "default": self.default, "type": self.type.__name__,
                "allowed": self.text, "doc": self.doc}


@dataclass(frozen=True)
class ParamSpec:
    """The parameters of one block, in the order they are validated.

    Parameters
    ----------
    *params : Param
    kind : str
        What one entry is called in messages (``"parameter"``, ``"workload knob"``).
    """
    params: tuple = field(default=())
    kind: str = "parameter"

    def __init__(self, *params, kind="parameter"):
        names = [p.name for p in params]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate parameter names in {names}")
        object.__setattr__(self, "params", tuple(params))
        object.__setattr__(self, "kind", kind)

    def __len__(self):
        return len(self.params)

    def _unknown(self, name):
        return TypeError(f"unknown {self.kind} {name!r}; allowed: "
                         f"{', '.join(self.names) or 'none'}")

    def __iter__(self):
        return iter(self.params)

    def __getitem__(self, name):
        for param in self.params:
            if param.name == name:
                return param
        raise KeyError(name)

    @property
    def names(self):
        return tuple(p.name for p in self.params)

    def defaults(self):
        """The default values, as a new dict."""
        return {p.name: p.default for p in self.params}

    def validate(self, context=None, /, **given):
        """Defaults overlaid with ``given``, each value checked; returns a new dict.

        ``context`` (positional) holds values a rule function may also depend on without being
        part of this spec: the generation parameters, for the workload knobs of a perf run.

        Raises
        ------
        TypeError
            An unknown parameter name, or a value of the wrong type.
        ValueError
            A value outside its range.
        """
        for name in given:
            if name not in self.names:
                raise self._unknown(name)
        values = {}
        for param in self.params:
            value = given.get(param.name, param.default)
            seen = values if context is None else {**context, **values}
            values[param.name] = param.rule_for(seen).check(param.name, value)
        return values

    def convert(self, given):
        """Command-line strings (``{"lanes": "8"}``) converted to each parameter's type."""
        out = {}
        for name, text in given.items():
            if name not in self.names:
                raise self._unknown(name)
            out[name] = self[name].convert(text)
        return out

    def describe(self):
        return [p.describe() for p in self.params]
