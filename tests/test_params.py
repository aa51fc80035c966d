"""sparsehw.params: the rules, their one message style, Param and ParamSpec."""

import numpy as np
import pytest

from sparsehw.params import (Param, ParamSpec, Rule, boolean, check, float_in, int_in, multiple_of,
                             one_of, pow2_in)


# -- rules: what passes, and the one message style for what does not --------------------------

@pytest.mark.parametrize("rule, good", [
    (int_in(1, 64), [1, 64, np.int64(5)]),
    (int_in(0), [0, 10 ** 9]),
    (pow2_in(1, 32), [1, 2, 32, np.int32(8)]),
    (multiple_of(4), [4, 8, 1024]),
    (multiple_of(4, 16), [4, 16]),
    (float_in(0, 0.99), [0, 0.0, 0.5, 0.99]),
    (one_of("a", "b"), ["a", "b"]),
    (boolean(), [True, False, 0, 1]),
])
def test_rules_accept(rule, good):
    for value in good:
        assert rule.check("x", value) is value


@pytest.mark.parametrize("rule, value, error, message", [
    (int_in(1, 64), 0, ValueError, "x must be an integer in 1..64, not 0"),
    (int_in(1, 64), 65, ValueError, "x must be an integer in 1..64, not 65"),
    (int_in(1, 64), 4.0, TypeError, "x must be an integer in 1..64, not 4.0"),
    (int_in(1, 64), True, TypeError, "x must be an integer in 1..64, not True"),
    (int_in(1, 64), "8", TypeError, "x must be an integer in 1..64, not '8'"),
    (int_in(1, 64), None, TypeError, "x must be an integer in 1..64, not None"),
    (int_in(0), -1, ValueError, "x must be an integer >= 0, not -1"),
    (pow2_in(1, 32), 3, ValueError, "x must be a power of two in 1..32, not 3"),
    (pow2_in(1, 32), 64, ValueError, "x must be a power of two in 1..32, not 64"),
    (pow2_in(2, 32), 1, ValueError, "x must be a power of two in 2..32, not 1"),
    (pow2_in(0, 32), 0, ValueError, "x must be a power of two in 0..32, not 0"),
    (multiple_of(4), 6, ValueError, "x must be a positive multiple of 4, not 6"),
    (multiple_of(4), 0, ValueError, "x must be a positive multiple of 4, not 0"),
    (multiple_of(4, 16), 20, ValueError, "x must be a multiple of 4 in 4..16, not 20"),
    (float_in(0, 0.99), 1, ValueError, "x must be a number in 0..0.99, not 1"),
    (float_in(0, 0.99), -0.1, ValueError, "x must be a number in 0..0.99, not -0.1"),
    (float_in(0, 0.99), "0.5", TypeError, "x must be a number in 0..0.99, not '0.5'"),
    (float_in(0, 0.99), False, TypeError, "x must be a number in 0..0.99, not False"),
    (one_of("a", "b"), "c", ValueError, "x must be one of 'a', 'b', not 'c'"),
    (one_of("a", "b"), 1, TypeError, "x must be one of 'a', 'b', not 1"),
    (boolean(), 2, ValueError, "x must be a boolean, not 2"),
    (boolean(), "yes", TypeError, "x must be a boolean, not 'yes'"),
])
def test_rules_reject_with_one_message_style(rule, value, error, message):
    with pytest.raises(error) as info:
        rule.check("x", value)
    assert str(info.value) == message


def test_check_outside_a_spec():
    assert check("lanes", 8, int_in(1, 64)) == 8
    with pytest.raises(ValueError, match=r"^lanes must be an integer in 1\.\.64, not 99$"):
        check("lanes", 99, int_in(1, 64))


def test_custom_rule_words():
    seven = Rule("7 with mixed=1", lambda v: v == 7)
    assert seven.check("mant_bits", 7) == 7
    with pytest.raises(ValueError, match=r"^mant_bits must be 7 with mixed=1, not 5$"):
        seven.check("mant_bits", 5)


# -- Param ---------------------------------------------------------------------------------------

def test_param_text_type_and_describe():
    lanes = Param("lanes", 4, int_in(1, 64), doc="batch columns")
    assert lanes.text == "an integer in 1..64" and lanes.type is int
    assert lanes.describe() == {"name": "lanes", "default": 4, "type": "int",
                                "allowed": "an integer in 1..64", "doc": "batch columns"}
    dependent = Param("n", 1, lambda v: int_in(1, v["m"]))
    assert dependent.text == "see the block's documentation" and dependent.type is int
    assert Param("n", 1, lambda v: int_in(1, v["m"]), allowed="an integer in 1..m").text == \
        "an integer in 1..m"
    assert Param("mixed", False, boolean()).type is bool
    assert Param("stall", 0.0, float_in(0, 1)).type is float
    assert Param("mask", "a", one_of("a", "b")).type is str


@pytest.mark.parametrize("param, text, value", [
    (Param("lanes", 4, int_in(1, 64)), " 8 ", 8),
    (Param("lanes", 4, int_in(1, 64)), "0x10", 16),
    (Param("mixed", False, boolean()), "yes", True),
    (Param("mixed", False, boolean()), "0", False),
    (Param("mixed", False, boolean()), "Off", False),
    (Param("stall", 0.0, float_in(0, 1)), "0.25", 0.25),
    (Param("mask", "a", one_of("a", "b")), " b", "b"),
    (Param("lanes", 4, int_in(1, 64)), 7, 7),          # not a string: left as it is
])
def test_param_convert(param, text, value):
    assert param.convert(text) == value


@pytest.mark.parametrize("param, text, message", [
    (Param("lanes", 4, int_in(1, 64)), "eight", "lanes must be an integer in 1..64, not 'eight'"),
    (Param("mixed", False, boolean()), "maybe",
     "mixed must be a boolean (0/1/true/false), not 'maybe'"),
    (Param("stall", 0.0, float_in(0, 1)), "lots", "stall must be a number in 0..1, not 'lots'"),
])
def test_param_convert_errors(param, text, message):
    with pytest.raises(ValueError) as info:
        param.convert(text)
    assert str(info.value) == message


# -- ParamSpec -----------------------------------------------------------------------------------

SPEC = ParamSpec(
    Param("max_m", 32, pow2_in(1, 32)),
    Param("ratio", 4, lambda v: pow2_in(1, v["max_m"]), allowed="a power of two in 1..max_m"),
)


def test_spec_defaults_and_validate():
    assert SPEC.names == ("max_m", "ratio") and len(SPEC) == 2
    assert SPEC.defaults() == {"max_m": 32, "ratio": 4}
    SPEC.defaults()["max_m"] = 1                      # a new dict every time
    assert SPEC.defaults()["max_m"] == 32
    assert SPEC.validate() == {"max_m": 32, "ratio": 4}
    assert SPEC.validate(max_m=8, ratio=8) == {"max_m": 8, "ratio": 8}
    assert SPEC["ratio"].text == "a power of two in 1..max_m"
    with pytest.raises(KeyError):
        SPEC["nope"]
    assert [p.name for p in SPEC] == ["max_m", "ratio"]


@pytest.mark.parametrize("given, error, message", [
    ({"max_m": 4, "ratio": 8}, ValueError, "ratio must be a power of two in 1..4, not 8"),
    ({"max_m": 3}, ValueError, "max_m must be a power of two in 1..32, not 3"),
    ({"ratoi": 2}, TypeError, "unknown parameter 'ratoi'; allowed: max_m, ratio"),
])
def test_spec_validate_errors(given, error, message):
    with pytest.raises(error) as info:
        SPEC.validate(**given)
    assert str(info.value) == message


def test_spec_context_and_kind():
    knobs = ParamSpec(Param("k", 64, lambda v: multiple_of(v["m"], v["max_k"])),
                      kind="workload knob")
    assert knobs.validate({"m": 8, "max_k": 128}, k=128) == {"k": 128}
    with pytest.raises(ValueError, match=r"^k must be a multiple of 8 in 8\.\.64, not 128$"):
        knobs.validate({"m": 8, "max_k": 64}, k=128)
    with pytest.raises(TypeError, match=r"^unknown workload knob 'q'; allowed: k$"):
        knobs.validate({"m": 8, "max_k": 64}, q=1)
    with pytest.raises(TypeError, match=r"^unknown workload knob 'q'; allowed: k$"):
        knobs.convert({"q": "1"})
    with pytest.raises(TypeError, match=r"^unknown parameter 'a'; allowed: none$"):
        ParamSpec().validate(a=1)


def test_spec_convert_and_describe():
    assert SPEC.convert({"max_m": "8", "ratio": "2"}) == {"max_m": 8, "ratio": 2}
    assert SPEC.describe() == [
        {"name": "max_m", "default": 32, "type": "int", "allowed": "a power of two in 1..32",
         "doc": ""},
        {"name": "ratio", "default": 4, "type": "int", "allowed": "a power of two in 1..max_m",
         "doc": ""}]


def test_spec_rejects_duplicate_names():
    with pytest.raises(ValueError, match=r"^duplicate parameter names in \['a', 'a'\]$"):
        ParamSpec(Param("a", 1, int_in(0)), Param("a", 2, int_in(0)))
