"""The ``calculator`` tool: exact arithmetic, and refusal of everything outside its allow-list,
of inputs whose evaluation would be huge, and of values that are not finite numbers."""

from __future__ import annotations

import json
import math
import time

import jsonschema
import pytest
from gateway_tools.calculator import (
    MAX_DEPTH,
    MAX_LENGTH,
    MAX_NODES,
    CalculationError,
    CalculatorTool,
    evaluate,
)

from gateway.tools.base import ToolResult
from tests.unit.tools.tool_support import tool_context

pytestmark = pytest.mark.anyio


async def calculate(expression: object, *, seconds: float = 5.0) -> ToolResult:
    return await CalculatorTool().call({"expression": expression}, tool_context(seconds=seconds))


async def refusal(expression: str) -> str:
    """The error text for ``expression``, which must be refused."""
    result = await calculate(expression)
    assert result.is_error, f"{expression[:80]!r} was not refused: {result.content!r}"
    assert isinstance(result.content, str)
    return result.content


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("2 + 3 * 4", 14),
        ("(2 + 3) * 4", 20),
        ("2 * 3 ** 2", 18),
        ("2 ** 3 ** 2", 512),  # ** is right-associative
        ("-2 ** 2", -4),  # ** binds tighter than unary minus
        ("(-2) ** 2", 4),
        ("- -3", 3),
        ("+5 - -5", 10),
        ("10 - 4 - 3", 3),
        ("7 // 2", 3),
        ("-7 // 2", -4),
        ("7 % 3", 1),
        ("-7 % 3", 2),
        ("7.5 % 2", 1.5),
        ("7 / 2", 3.5),
        ("6 / 3", 2.0),
        ("2 ** -2", 0.25),
        ("2 ** 0.5", math.sqrt(2)),
        ("1_000 + 0x10 + 0b11", 1019),
        ("1e3", 1000.0),
        ("  1 + 1  ", 2),
        ("sqrt(16)", 4.0),
        ("log(e)", 1.0),
        ("log(8, 2)", 3.0),
        ("log10(1000)", 3.0),
        ("exp(0)", 1.0),
        ("sin(pi / 2)", 1.0),
        ("cos(pi)", -1.0),
        ("tan(0)", 0.0),
        ("floor(-2.5)", -3),
        ("ceil(2.1)", 3),
        ("abs(-4)", 4),
        ("abs(-4.5)", 4.5),
        ("round(2.567, 2)", 2.57),
        ("round(2.5)", 2),
        ("round(1234, -2)", 1200),
        ("min(3, 1, 2)", 1),
        ("max(3, 1.5, 2)", 3),
        ("2 * (3 + sqrt(16)) ** 2", 98.0),
        ("2 ** 200", 2**200),
        ("(10**999) * (10**999) * (10**999) * (10**999)", 10**3996),
        ("floor(1e300)", math.floor(1e300)),
    ],
)
async def test_computes_arithmetic_exactly(expression: str, expected: float) -> None:
    result = await calculate(expression)

    assert not result.is_error, result.content
    assert result.content == {"expression": expression, "result": expected}
    assert isinstance(result.content, dict)
    # Integers stay integers (exact), the rest are floats.
    assert type(result.content["result"]) is type(expected)
    assert json.loads(result.text())["result"] == expected


@pytest.mark.parametrize(
    ("expression", "named"),
    [
        ("__import__('os')", "calling '__import__'"),
        ("open('x')", "calling 'open'"),
        ("().__class__.__bases__", "attribute access"),
        ("sqrt.__globals__", "attribute access"),
        ("(lambda: 1)()", "lambdas"),
        ("[x for x in ()]", "comprehensions"),
        ("sum(x for x in (1, 2))", "calling 'sum'"),
        ("max(*[1, 2])", "starred arguments"),
        ("[1, 2]", "lists"),
        ("(1, 2)", "tuples"),
        ("{1: 2}", "dicts"),
        ("[1][0]", "subscripts"),
        ('"a" * 10**9', "strings"),
        ("b'x'", "bytes"),
        ("f'{1}'", "f-strings"),
        ("1j", "complex numbers"),
        ("True + 1", "booleans"),
        ("None", "None"),
        ("(x := 1)", "assignment expressions"),
        ("1 < 2", "comparisons"),
        ("1 and 2", "boolean operators"),
        ("not 1", "the operator 'not'"),
        ("1 if 1 else 2", "conditional expressions"),
        ("~1", "the operator '~'"),
        ("1 << 2", "the operator '<<'"),
        ("6 & 3", "the operator '&'"),
        ("x + 1", "the name 'x'"),
        ("pi(2)", "calling 'pi'"),
        ("sqrt(x=4)", "keyword arguments"),
        ("(1)(2)", "calling anything but an allowed function by its name"),
        ("sqrt(4)(2)", "calling anything but an allowed function by its name"),
    ],
)
async def test_refuses_what_is_not_on_the_allow_list(expression: str, named: str) -> None:
    message = await refusal(expression)

    assert "not allowed" in message
    assert named in message


async def test_a_refusal_quotes_the_offending_part_and_lists_what_is_allowed() -> None:
    message = await refusal("2 * os.system(1)")

    assert "`os.system`" in message
    name_message = await refusal("sqrt(y)")
    assert "the name 'y'" in name_message
    assert "sqrt" in name_message
    assert "pi, e" in name_message


@pytest.mark.parametrize(
    ("expression", "says"),
    [
        ("9**9**9", "exponent 387420489 is too large"),
        ("10**10**10", "exponent 10000000000 is too large"),
        ("2**1000000", "exponent 1000000 is too large"),
        ("2.0 ** 1001", "exponent 1001 is too large"),
        ("2 ** -1001", "exponent -1001 is too large"),
        ("(10**999) ** 5", "about 4996 digits"),
        ("(2**1000) ** 15", "about 4516 digits"),
        ("(10**999) * (10**999) * (10**999) * (10**999) * (10**999)", "product would have"),
        ("(10**900) ** 4 * (10**900) ** 4", "product would have"),
        ("(2**1000) ** 14 * 2", "result would have"),
    ],
)
async def test_refuses_huge_numbers_before_computing_them(expression: str, says: str) -> None:
    message = await refusal(expression)

    assert says in message


@pytest.mark.parametrize(
    ("expression", "says"),
    [
        ("1 / 0", "division by zero in /"),
        ("1 // 0", "division by zero in //"),
        ("1 % 0", "division by zero in %"),
        ("1.0 / 0.0", "division by zero in /"),
        ("0 ** -1", "division by zero in **"),
        ("log(2, 1)", "division by zero in log()"),
        ("sqrt(-1)", "math domain error: sqrt()"),
        ("log(0)", "math domain error: log()"),
        ("(-8) ** (1 / 3)", "math domain error in **"),
        ("exp(1000)", "overflow in exp()"),
        ("sqrt(10**400)", "overflow in sqrt()"),
        ("10.0 ** 400", "overflow in **"),
        ("(10**400) + 0.5", "overflow in +"),
        ("1e308 * 10", "not a finite number (inf)"),
        ("1e400", "not a finite number (inf)"),
        ("1e400 - 1e400", "not a finite number (inf)"),
    ],
)
async def test_reports_values_that_are_not_finite_numbers(expression: str, says: str) -> None:
    message = await refusal(expression)

    assert says in message


@pytest.mark.parametrize(
    ("expression", "says"),
    [
        ("sin(1, 2)", "sin() takes 1 argument, not 2"),
        ("log()", "log() takes 1 or 2 arguments, not 0"),
        ("max(1)", "max() takes at least 2 arguments, not 1"),
        ("round(1.5, 0.5)", "round()'s second argument must be an integer"),
        ("round(5, -10**9)", "round()'s second argument must be an integer"),
        ("sqrt + 1", "sqrt is a function: call it"),
        ("2 +", "not a valid expression"),
        ("   ", "the expression is empty"),
    ],
)
async def test_explains_misuse(expression: str, says: str) -> None:
    message = await refusal(expression)

    assert says in message


async def test_refuses_nesting_beyond_the_caps_without_a_recursion_error() -> None:
    parentheses = "(" * 1000 + "1" + ")" * 1000
    unary = "-" * 999 + "1"
    calls = "abs(" * (MAX_DEPTH + 1) + "1" + ")" * (MAX_DEPTH + 1)
    wide = "max(" + ", ".join(["1"] * MAX_NODES) + ")"

    assert "characters" in await refusal(parentheses)
    assert "too many nested parentheses" in await refusal("(" * 300 + "1" + ")" * 300)
    assert f"deeper than {MAX_DEPTH}" in await refusal(unary)
    assert f"deeper than {MAX_DEPTH}" in await refusal(calls)
    assert f"more than {MAX_NODES} parts" in await refusal(wide)
    # Parentheses alone do not nest operations: 150 levels of them are fine.
    assert (await calculate("(" * 150 + "1" + ")" * 150)).content == {
        "expression": "(" * 150 + "1" + ")" * 150,
        "result": 1,
    }


async def test_refuses_an_overlong_expression_in_the_schema_and_in_the_code() -> None:
    long = "1+" * 5000
    tool = CalculatorTool()
    jsonschema.Draft202012Validator.check_schema(tool.parameters)

    with pytest.raises(jsonschema.ValidationError, match="is too long"):
        jsonschema.validate({"expression": long}, tool.parameters)
    jsonschema.validate({"expression": "1" * MAX_LENGTH}, tool.parameters)
    assert f"10000 characters; at most {MAX_LENGTH}" in await refusal(long)


async def test_refuses_arguments_that_are_not_an_expression() -> None:
    result = await calculate(12)

    assert result.is_error
    assert result.content == "expression must be a string"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({}, CalculatorTool().parameters)


async def test_refuses_once_the_deadline_has_passed() -> None:
    result = await calculate("1 + 1", seconds=-1.0)

    assert result.is_error
    assert "no time" in str(result.content)
    with pytest.raises(CalculationError, match="ran out of time"):
        evaluate("1 + 1", deadline=time.monotonic() - 1.0)
