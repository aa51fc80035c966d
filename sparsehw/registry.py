"""The block registry: every block, its generation parameters and how to build, test and measure it.

A block family lives in ``sparsehw/families/<family>.py`` and exports ``BLOCKS``, a list of
:class:`Block`. Its name goes into :data:`FAMILIES`. See ``docs/framework.md``.
"""

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from sparsehw import params
from sparsehw.params import ParamSpec, Rule


__all__ = ["FAMILIES", "Block", "UserError", "all_blocks", "get_block",
           "parse_assignments", "resolve_params", "resolve_workload", "build", "check_params"]


#: Block families, in the order ``sparsehw list`` shows them.
FAMILIES = (
    "spu",
    "ring",
    "hbfp",
    "figs",
    "act",
    "chip",
)


class UserError(Exception):
    """A mistake in what the user asked for: reported as one line, without a traceback."""


@dataclass(frozen=True)
class Param:
    """Compatibility only, until the ring family declares a :class:`~sparsehw.params.ParamSpec`:
    a parameter whose range is checked by the builder, described by ``allowed`` in words.

    New code uses :class:`sparsehw.params.Param`.
    """
    name: str
    default: Any
    allowed: str
    type: type = int
    choices: tuple = None

    def spec_param(self):
        """The same parameter as a :class:`sparsehw.params.Param` checking only the type (and
        the choices); the builder checks the range."""
        types = (bool, int) if self.type is bool else (float, int) if self.type is float \
            else (self.type,)
        choices = self.choices
        rule = Rule(self.allowed, (lambda v: v in choices) if choices else (lambda v: True),
                    types)
        return params.Param(self.name, self.default, rule)


def _legacy_spec(declared, kind):
    return ParamSpec(*(p.spec_param() for p in declared), kind=kind)


@dataclass(frozen=True)
class Block:
    """A generated block and everything the flow needs to know about it.

    Parameters
    ----------
    name : str
        Block name (``sparsehw gen NAME``), also the Verilog module name.
    summary : str
        One line for ``sparsehw list``.
    params : ParamSpec
        Generation parameters: the spec the component itself validates with.
    build : callable
        ``build(**params) -> wiring.Component``; raises ``ValueError``/``TypeError`` for illegal values.
    testbench : str or None
        Dotted module of the cocotb regression (``sparsehw.verif.spu.tb_spu``).
    perf : callable or None
        ``perf(params, workload, *, sim, seed, build_dir) -> dict`` perf record, with
        ``passed`` (bool) and, when it is false, ``error`` (one line).
    workload_params : ParamSpec
        Knobs of ``sparsehw perf -w NAME=VALUE`` (``kind="workload knob"``); a rule may depend on
        the generation parameters (see :meth:`ParamSpec.validate`'s ``context``).
    synth_build : callable or None
        Alternative top level for synthesis (default: ``build``).
    workload_summary : str
        One line on the perf workload for ``sparsehw list``.
    perf_defaults : dict or None
        Generation parameters ``sparsehw perf`` uses when no ``-p`` is given (when the
        reference workload needs a bigger design than the quick-to-simulate defaults).
    """
    name: str
    summary: str
    params: ParamSpec
    build: Callable
    testbench: str = None
    perf: Callable = None
    workload_params: ParamSpec = ParamSpec(kind="workload knob")
    synth_build: Callable = None
    workload_summary: str = ""
    perf_defaults: dict = None

    def __post_init__(self):
        # Compatibility: a tuple of registry.Param (ring family, until it declares a ParamSpec).
        if not isinstance(self.params, ParamSpec):
            object.__setattr__(self, "_legacy", True)
            object.__setattr__(self, "params", _legacy_spec(self.params, "parameter"))
        if not isinstance(self.workload_params, ParamSpec):
            object.__setattr__(self, "workload_params",
                               _legacy_spec(self.workload_params, "workload knob"))
        elif self.workload_params.kind != "workload knob":
            object.__setattr__(self, "workload_params",
                               ParamSpec(*self.workload_params, kind="workload knob"))

    def defaults(self):
        """The default generation parameters, as a new dict."""
        return self.params.defaults()

    def describe(self):
        return {"name": self.name, "summary": self.summary,
                "params": self.params.describe(),
                "workload_params": self.workload_params.describe(),
                "workload": self.workload_summary,
                "has_testbench": self.testbench is not None, "has_perf": self.perf is not None}


def all_blocks():
    """All registered blocks, family by family, as a dict ``name -> Block``."""
    blocks = {}
    for family in FAMILIES:
        module = importlib.import_module(f"sparsehw.families.{family}")
        for block in module.BLOCKS:
            assert block.name not in blocks, f"duplicate block name {block.name}"
            blocks[block.name] = block
    return blocks


def get_block(name):
    """The block called ``name``, or :class:`UserError` listing the known ones."""
    blocks = all_blocks()
    if name not in blocks:
        raise UserError(f"unknown block {name!r}; known blocks: {', '.join(blocks)}")
    return blocks[name]


def parse_assignments(items, what="parameter"):
    """Turn ``["a=1", "b=2"]`` into ``{"a": "1", "b": "2"}``; later assignments win."""
    result = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UserError(f"{what} assignment must look like NAME=VALUE, not {item!r}")
        result[name.strip()] = value.strip()
    return result


def _validate(block, spec, given, context=None):
    try:
        return spec.validate(context, **spec.convert(given))
    except (TypeError, ValueError) as error:
        raise UserError(f"{block.name}: {error}") from None


def resolve_params(block, given):
    """Defaults overlaid with ``given`` (strings or values), converted and validated by the
    block's spec; :class:`UserError` ``"BLOCK: NAME must be ALLOWED, not VALUE"`` if not legal."""
    return _validate(block, block.params, given)


def resolve_workload(block, given, params=None):
    """Like :func:`resolve_params`, for the workload knobs of ``sparsehw perf``.

    With ``params`` (the generation parameters, validated) every rule is checked, also those
    that depend on them (``k`` up to ``max_k``); without, only the names, the types and the rules
    that depend on nothing (the perf run validates the rest with the parameters it is given).
    """
    if params is not None:
        return _validate(block, block.workload_params, given, params)
    spec = block.workload_params
    try:
        values = {**spec.defaults(), **spec.convert(given)}
        for param in spec:
            if isinstance(param.rule, Rule):
                param.rule.check(param.name, values[param.name])
    except (TypeError, ValueError) as error:
        raise UserError(f"{block.name}: {error}") from None
    return values


def build(block, params, *, for_synth=False):
    """Validate ``params`` with the block's spec, then build the block's component; errors are
    :class:`UserError` (illegal parameters never reach the constructor)."""
    values = _validate(block, block.params, params)
    builder = (block.synth_build or block.build) if for_synth else block.build
    try:
        return builder(**values)
    except (ValueError, TypeError) as error:
        raise UserError(f"{block.name}: {error}") from None


def check_params(block, params):
    """Validate ``params`` with the block's spec, without building anything; return them with
    the defaults filled in, or raise :class:`UserError`."""
    values = _validate(block, block.params, params)
    if getattr(block, "_legacy", False):
        # Compatibility (ring family, until it declares a ParamSpec): its builder checks ranges.
        build(block, values)._MustUse__silence = True
    return values
