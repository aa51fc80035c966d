"""The registry: blocks declared with a ParamSpec, command-line strings converted and validated."""

import pytest

from sparsehw import registry
from sparsehw.params import Param, ParamSpec, float_in, int_in, one_of, pow2_in
from sparsehw.registry import Block, UserError


def _never_built(**params):
    raise AssertionError("validation must not build the component")


TOY = Block(
    name="toy", summary="a toy block",
    params=ParamSpec(Param("size", 4, pow2_in(1, 64), doc="entries"),
                     Param("mode", "fast", one_of("fast", "small"))),
    build=_never_built,
    workload_params=ParamSpec(Param("n", 8, lambda v: int_in(1, v["size"])),
                              Param("stall", 0.0, float_in(0, 0.99)), kind="workload knob"),
)


def test_resolve_params_converts_strings_and_fills_defaults():
    assert registry.resolve_params(TOY, {"size": "0x10"}) == {"size": 16, "mode": "fast"}
    assert registry.resolve_params(TOY, {"mode": "small"}) == {"size": 4, "mode": "small"}


@pytest.mark.parametrize("given,message", [
    ({"size": "3"}, "toy: size must be a power of two in 1..64, not 3"),
    ({"size": "four"}, "toy: size must be a power of two in 1..64, not 'four'"),
    ({"mode": "slow"}, "toy: mode must be one of 'fast', 'small', not 'slow'"),
    ({"bogus": "1"}, "toy: unknown parameter 'bogus'; allowed: size, mode"),
])
def test_resolve_params_errors_are_one_line_user_errors(given, message):
    with pytest.raises(UserError) as info:
        registry.resolve_params(TOY, given)
    assert str(info.value) == message


def test_check_params_validates_without_building():
    assert registry.check_params(TOY, {"size": 8}) == {"size": 8, "mode": "fast"}
    with pytest.raises(UserError, match=r"^toy: size must be a power of two in 1\.\.64, not 128$"):
        registry.check_params(TOY, {"size": 128})


def test_resolve_workload_checks_dependent_rules_against_the_params():
    assert registry.resolve_workload(TOY, {"n": "16"}, {"size": 16, "mode": "fast"}) \
        == {"n": 16, "stall": 0.0}
    with pytest.raises(UserError, match=r"^toy: n must be an integer in 1\.\.4, not 16$"):
        registry.resolve_workload(TOY, {"n": "16"}, {"size": 4, "mode": "fast"})
    # Without the parameters, only what depends on nothing is checked (the perf run does the rest).
    assert registry.resolve_workload(TOY, {"n": "16"}) == {"n": 16, "stall": 0.0}
    with pytest.raises(UserError, match=r"^toy: stall must be a number in 0\.\.0\.99, not 1\.0$"):
        registry.resolve_workload(TOY, {"stall": "1"})
    with pytest.raises(UserError, match=r"^toy: unknown workload knob 'x'; allowed: n, stall$"):
        registry.resolve_workload(TOY, {"x": "1"})


def test_describe_renders_allowed_text_and_doc():
    described = TOY.describe()
    assert described["params"][0] == {"name": "size", "default": 4, "type": "int",
                                      "allowed": "a power of two in 1..64", "doc": "entries"}
    assert described["params"][1]["type"] == "str"
    assert described["workload_params"][1]["type"] == "float"
    assert TOY.defaults() == {"size": 4, "mode": "fast"}


def test_build_turns_parameter_errors_into_user_errors():
    def strict(**params):
        raise ValueError("size must be a power of two in 1..64, not 3")
    block = Block(name="b", summary="", params=ParamSpec(), build=strict)
    with pytest.raises(UserError, match=r"^b: size must be"):
        registry.build(block, {})


def test_every_registered_block_has_a_spec_whose_defaults_validate():
    for block in registry.all_blocks().values():
        assert isinstance(block.params, ParamSpec)
        assert registry.check_params(block, {}) == block.defaults()


def test_unknown_block_and_malformed_assignment():
    with pytest.raises(UserError, match="unknown block 'nope'"):
        registry.get_block("nope")
    with pytest.raises(UserError, match="must look like NAME=VALUE, not 'lanes'"):
        registry.parse_assignments(["lanes"])
    assert registry.parse_assignments(["a=1", "a=2", " b = x "]) == {"a": "2", "b": "x"}


def test_a_block_declares_its_parameters_as_a_spec():
    with pytest.raises(TypeError, match=r"^block 'old': params must be a "
                                        r"sparsehw\.params\.ParamSpec, not \(\)$"):
        Block(name="old", summary="", params=(), build=_never_built)
    plain = Block(name="p", summary="", params=ParamSpec(), build=_never_built,
                  workload_params=ParamSpec(Param("n", 1, int_in(1))))
    assert plain.workload_params.kind == "workload knob"     # named so in messages


def test_blocks_know_their_family_module():
    blocks = registry.all_blocks()
    assert blocks["spu"].family == "sparsehw.families.spu"
    assert blocks["nm_broadcast"].family == "sparsehw.families.figs"
    assert all(block.family.startswith("sparsehw.families.") for block in blocks.values())


@pytest.mark.parametrize("name", sorted(registry.all_blocks()))
def test_every_default_written_as_text_reads_back(name):
    """The commands the report records (``-p act_engine=False ...``) must run: every default,
    written as ``str(value)``, reads back as the same value (a dependent rule's boolean was read
    as an integer and ``False`` rejected)."""
    block = registry.get_block(name)
    text = [f"{param.name}={param.default}" for param in block.params]
    assert registry.resolve_params(block, registry.parse_assignments(text)) == \
        registry.resolve_params(block, {})
