"""Small pure pieces of the spec package: variables, int-or-percent, durations, AMI names."""

import pytest

from capt.rules.intstr import IntOrPercentError, scaled_value
from capt.spec.durations import parse_duration
from capt.spec.errors import MissingVariablesError
from capt.spec.models import AMISelector
from capt.spec.variables import parse_var_options, referenced_variables, substitute


@pytest.mark.parametrize(
    "text,values,env,expected",
    [
        ("a: ${X}", {"X": "1"}, {}, "a: 1"),
        ("a: ${X}", {}, {"X": "env"}, "a: env"),
        ("a: ${X}", {"X": "var"}, {"X": "env"}, "a: var"),
        ("a: ${X:-d}", {}, {}, "a: d"),
        ("a: ${X:-d}", {"X": ""}, {}, "a: d"),  # :- also replaces an empty value
        ("a: ${X-d}", {"X": ""}, {}, "a: "),  # - only replaces an unset one
        ("a: ${X:-v1.2.3}", {"X": "v9"}, {}, "a: v9"),
        ("cmd: $(CSI_ENDPOINT) $HOME", {}, {}, "cmd: $(CSI_ENDPOINT) $HOME"),
        ("a: ${ X }", {"X": "sp"}, {}, "a: sp"),
    ],
)
def test_substitute(text, values, env, expected):
    assert substitute(text, values, env) == expected


def test_missing_variables_are_all_listed_once_sorted():
    with pytest.raises(MissingVariablesError) as info:
        substitute("${B} ${A} ${B} ${C:-ok}", {}, {})
    assert info.value.names == ["A", "B"]
    assert "A, B" in str(info.value)


def test_referenced_variables_in_order():
    assert referenced_variables("${B} ${A:-x} ${B}") == ["B", "A"]


def test_parse_var_options():
    assert parse_var_options(["A=1", "B=x=y", "C="]) == {"A": "1", "B": "x=y", "C": ""}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_var_options(["NOVALUE"])


@pytest.mark.parametrize(
    "value,total,round_up,expected",
    [
        (5, 10, True, 5),
        ("50%", 10, False, 5),
        ("39%", 10, True, 4),
        ("39%", 10, False, 3),
        ("0%", 0, True, 0),
        ("100%", 7, False, 7),
        ("33%", 3, True, 1),
        ("33%", 3, False, 0),
    ],
)
def test_scaled_value(value, total, round_up, expected):
    assert scaled_value(value, total, round_up) == expected


@pytest.mark.parametrize("bad", ["5", "oops", "5.5%", -1, True, 1.5, None])
def test_scaled_value_rejects(bad):
    with pytest.raises(IntOrPercentError):
        scaled_value(bad, 10, True)


@pytest.mark.parametrize(
    "text,seconds",
    [("10m", 600), ("300s", 300), ("1h30m", 5400), ("1.5h", 5400), ("0", 0), ("250ms", 0.25)],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "10", "ten minutes", "5m3", "m5"])
def test_parse_duration_rejects(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_ami_name_pattern_follows_capa():
    assert AMISelector().name_pattern("v1.20.5") == "capa-ami-ubuntu-24.04-?1.20.5-*"
    custom = AMISelector(lookup_format="my-{{.BaseOS}}-k8s-{{.K8sVersion}}", lookup_base_os="flatcar")
    assert custom.name_pattern("v1.30.1") == "my-flatcar-k8s-1.30.1"
