"""The block registry: every block, its generation parameters and how to build, test and measure it.

A block family lives in ``sparsehw/families/<family>.py`` and exports ``BLOCKS``, a list of
:class:`Block`. Its name goes into :data:`FAMILIES`. See ``docs/framework.md``.
"""

import dataclasses
import importlib
from dataclasses import dataclass
from typing import Callable

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
        Generation parameters ``sparsehw perf`` starts from, overlaid with ``-p`` (when the
        reference workload needs a bigger design than the quick-to-simulate defaults).
    family : str or None
        Dotted name of the family module that registers the block (set by :func:`all_blocks`);
        where the block's source closure starts (its RTL, testbench and perf modules).
    mutation_workload : dict or None
        Workload knobs of the regression run that ``sparsehw mutate`` gives every mutant (a
        documented subset of the regression, for a block whose full regression is too long to
        run 50 times); None: the regression as ``make test``'s default run.
    pack_dsp_registers : bool
        Whether ``sparsehw synth --place`` moves the registers around each multiplier into the
        ``MULT18X18D`` before nextpnr (:mod:`sparsehw.synth.dsp_registers`). True by default;
        False for a block where packing was measured to lower Fmax (``--dsp-registers`` on the
        command line overrides it).
    pnr_router : str or None
        nextpnr router of ``sparsehw synth --place`` (None: :data:`sparsehw.synth.fmax.ROUTER`,
        router1; the module docstring there says when another router is chosen).
    pnr_budget_s : int or None
        Wall-clock bound of each nextpnr run, seconds (None: :data:`sparsehw.flow.PNR_BUDGET_S`);
        the record names the budget it ran under (``pnr_budget_s``).
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
    family: str = None
    mutation_workload: dict = None
    pack_dsp_registers: bool = True
    pnr_router: str = None
    pnr_budget_s: int = None

    def __post_init__(self):
        for attr in ("params", "workload_params"):
            if not isinstance(getattr(self, attr), ParamSpec):
                raise TypeError(f"block {self.name!r}: {attr} must be a "
                                f"sparsehw.params.ParamSpec, not {getattr(self, attr)!r}")
        if self.workload_params.kind != "workload knob":
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
            if block.family is None:
                block = dataclasses.replace(block, family=module.__name__)
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
    return _validate(block, block.params, params)
