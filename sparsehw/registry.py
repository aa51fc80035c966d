"""The block registry: every block, its generation parameters and how to build, test and measure it.

A block family lives in ``sparsehw/families/<family>.py`` and exports ``BLOCKS``, a list of
:class:`Block`. Its name goes into :data:`FAMILIES`. See ``docs/framework.md``.
"""

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable


__all__ = ["FAMILIES", "Param", "Block", "UserError", "all_blocks", "get_block",
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
    """A generation parameter or workload knob.

    Parameters
    ----------
    name : str
        Name as used on the command line (``-p name=value``) and as keyword of the builder.
    default
        Default value.
    allowed : str
        What is allowed, in words (``"power of two in 1..32"``). The builder does the checking;
        this text is shown by ``sparsehw list``.
    type : type
        ``int``, ``str``, ``bool`` or ``float``: how a command-line string is converted.
    choices : tuple or None
        For string parameters, the allowed values (checked by the CLI).
    """
    name: str
    default: Any
    allowed: str
    type: type = int
    choices: tuple = None

    def convert(self, text):
        """Convert a command-line string to this parameter's type, or raise :class:`UserError`."""
        if not isinstance(text, str):
            value = text
        elif self.type is bool:
            lowered = text.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                value = True
            elif lowered in ("0", "false", "no", "off"):
                value = False
            else:
                raise UserError(f"{self.name} must be a boolean (0/1/true/false), not {text!r}")
        else:
            try:
                value = self.type(text.strip(), 0) if self.type is int else self.type(text)
            except ValueError:
                raise UserError(f"{self.name} must be {self.type.__name__} ({self.allowed}), "
                                f"not {text!r}") from None
        if self.choices is not None and value not in self.choices:
            raise UserError(f"{self.name} must be one of {', '.join(map(str, self.choices))}, "
                            f"not {value!r}")
        return value

    def describe(self):
        return {"name": self.name, "default": self.default, "type": self.type.__name__,
                "allowed": self.allowed,
                **({"choices": list(self.choices)} if self.choices is not None else {})}


@dataclass(frozen=True)
class Block:
    """A generated block and everything the flow needs to know about it.

    Parameters
    ----------
    name : str
        Block name (``sparsehw gen NAME``), also the Verilog module name.
    summary : str
        One line for ``sparsehw list``.
    params : tuple of Param
        Generation parameters.
    build : callable
        ``build(**params) -> wiring.Component``; raises ``ValueError``/``TypeError`` for illegal values.
    testbench : str or None
        Dotted module of the cocotb regression (``verif.spu.tb_spu``).
    perf : callable or None
        ``perf(params, workload, *, sim, seed, build_dir) -> dict`` perf record.
    workload_params : tuple of Param
        Knobs of ``sparsehw perf -w NAME=VALUE``.
    synth_build : callable or None
        Alternative top level for synthesis (default: ``build``).
    perf_defaults : dict or None
        Generation parameters ``sparsehw perf`` uses when no ``-p`` is given (when the
        reference workload needs a bigger design than the quick-to-simulate defaults).
    """
    name: str
    summary: str
    params: tuple
    build: Callable
    testbench: str = None
    perf: Callable = None
    workload_params: tuple = ()
    synth_build: Callable = None
    workload_summary: str = ""
    perf_defaults: dict = None

    def defaults(self):
        return {p.name: p.default for p in self.params}

    def describe(self):
        return {"name": self.name, "summary": self.summary,
                "params": [p.describe() for p in self.params],
                "workload_params": [p.describe() for p in self.workload_params],
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


def _resolve(declared, given, block_name, what):
    by_name = {p.name: p for p in declared}
    values = {p.name: p.default for p in declared}
    for name, text in given.items():
        if name not in by_name:
            allowed = ", ".join(by_name) or "none"
            raise UserError(f"unknown {what} {name!r} for block {block_name!r}; "
                            f"allowed: {allowed}")
        values[name] = by_name[name].convert(text)
    return values


def resolve_params(block, given):
    """Defaults overlaid with ``given`` (strings or values), converted; unknown names are errors."""
    return _resolve(block.params, given, block.name, "parameter")


def resolve_workload(block, given):
    """Like :func:`resolve_params`, for the workload knobs of ``sparsehw perf``."""
    return _resolve(block.workload_params, given, block.name, "workload knob")


def build(block, params, *, for_synth=False):
    """Build the block's component, turning parameter errors into :class:`UserError`."""
    builder = (block.synth_build or block.build) if for_synth else block.build
    try:
        return builder(**params)
    except (ValueError, TypeError) as error:
        raise UserError(f"{block.name}: {error}") from None


def check_params(block, params):
    """Validate ``params`` by building the block (its constructor checks them), then discard it.

    The discarded component is marked as deliberately unused, so Amaranth does not warn that an
    elaboratable was never elaborated.
    """
    component = build(block, params)
    component._MustUse__silence = True
