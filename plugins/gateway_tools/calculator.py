"""The ``calculator`` tool: arithmetic a model can trust, over an allow-list of syntax.

Models are poor at arithmetic and good at writing expressions, so the tool evaluates one. The
text comes from a model (and so, through prompt injection, from anyone), so it is never given to
``eval``: ``ast.parse`` turns it into a tree, a walk refuses every node outside a small allow-list
(number literals, ``+ - * / // % **``, a few ``math`` functions called by name, ``pi`` and ``e``),
and a small interpreter computes the rest. Every operation that could take long is bounded before
it runs: exponents, and the size of integers (estimated from bit lengths and logarithms before a
product or a power is computed), as well as the tree's size and depth.
"""

from __future__ import annotations

import ast
import math
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

from gateway.tools.base import ToolContext, ToolResult

Number: TypeAlias = int | float

MAX_LENGTH = 1000
"""Longest expression accepted, in characters (also the schema's ``maxLength``)."""
MAX_NODES = 200
"""Most expression nodes (numbers, names, operations, calls) in one expression."""
MAX_DEPTH = 100
"""Deepest nesting of expression nodes (parentheses alone add none; a sum of n terms is n deep).
It bounds the recursion of the evaluator."""
MAX_EXPONENT = 1000
"""Largest ``|b|`` in ``a ** b``."""
MAX_INT_BITS = 14_000
"""Largest integer, in bits (about 4200 decimal digits: under Python's 4300-digit limit on
int-to-text conversion, so any result can be written as JSON)."""
MAX_SECONDS = 1.0
"""Longest an evaluation may run, whatever the call's deadline."""
MAX_ROUND_DIGITS = 1000
"""Largest ``|ndigits|`` in ``round(x, ndigits)`` (a huge negative one would compute a huge power
of ten)."""

_MAX_INT_DIGITS = int(MAX_INT_BITS * math.log10(2))

# name -> (function, fewest arguments, most arguments or None for any number)
_FUNCTIONS: dict[str, tuple[Callable[..., Number], int, int | None]] = {
    "sqrt": (math.sqrt, 1, 1),
    "log": (math.log, 1, 2),
    "log10": (math.log10, 1, 1),
    "exp": (math.exp, 1, 1),
    "sin": (math.sin, 1, 1),
    "cos": (math.cos, 1, 1),
    "tan": (math.tan, 1, 1),
    "floor": (math.floor, 1, 1),
    "ceil": (math.ceil, 1, 1),
    "abs": (abs, 1, 1),
    "round": (round, 1, 2),
    "min": (min, 2, None),
    "max": (max, 2, None),
}
_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}

_BINARY: dict[type[ast.operator], str] = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.Pow: "**",
}
_OPERATOR_SYMBOLS: dict[type[ast.AST], str] = {
    ast.MatMult: "@",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.BitOr: "|",
    ast.BitXor: "^",
    ast.BitAnd: "&",
    ast.Not: "not",
    ast.Invert: "~",
}
# What the refusal calls each kind of node the allow-list leaves out.
_REFUSED: dict[type[ast.AST], str] = {
    ast.Attribute: "attribute access",
    ast.Subscript: "subscripts",
    ast.Slice: "slices",
    ast.Lambda: "lambdas",
    ast.ListComp: "comprehensions",
    ast.SetComp: "comprehensions",
    ast.DictComp: "comprehensions",
    ast.GeneratorExp: "generator expressions",
    ast.List: "lists",
    ast.Tuple: "tuples",
    ast.Set: "sets",
    ast.Dict: "dicts",
    ast.JoinedStr: "f-strings",
    ast.FormattedValue: "f-strings",
    ast.NamedExpr: "assignment expressions (:=)",
    ast.Compare: "comparisons",
    ast.BoolOp: "boolean operators (and, or)",
    ast.IfExp: "conditional expressions",
    ast.Starred: "starred arguments",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
}
_CONSTANT_KINDS: dict[type[object], str] = {
    str: "strings",
    bytes: "bytes",
    complex: "complex numbers",
    bool: "booleans",
}
_ALLOWED_NAMES = f"functions {', '.join(_FUNCTIONS)}; constants {', '.join(_CONSTANTS)}"


class CalculationError(Exception):
    """The expression is refused or cannot be computed; the message says why, for the model."""


def evaluate(expression: str, *, deadline: float | None = None) -> Number:
    """Compute ``expression`` under the allow-list and the caps of this module.

    Args:
        expression: arithmetic in Python syntax, such as ``"2 * (3 + sqrt(16)) ** 2"``.
        deadline: ``time.monotonic()`` by which to give up (at most :data:`MAX_SECONDS` from now
            in any case).

    Returns:
        An int where the arithmetic stays in integers (``7 // 2``, ``2 ** 10``), else a finite
        float (``7 / 2``, ``sqrt(2)``).

    Raises:
        CalculationError: the text is not an allowed expression, exceeds a cap, or has no finite
            value (division by zero, a math domain error, overflow).
    """
    if len(expression) > MAX_LENGTH:
        raise CalculationError(
            f"the expression has {len(expression)} characters; at most {MAX_LENGTH} are allowed"
        )
    text = expression.strip()
    if not text:
        raise CalculationError("the expression is empty")
    try:
        with warnings.catch_warnings():
            # A string with an invalid escape warns while parsing; it is refused below anyway.
            warnings.simplefilter("ignore")
            tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        where = f" at column {exc.offset}" if exc.offset else ""
        raise CalculationError(f"not a valid expression{where}: {exc.msg}") from None
    except (RecursionError, MemoryError):
        raise CalculationError("the expression is nested too deeply to parse") from None
    _check_tree(tree.body, text)
    cap = time.monotonic() + MAX_SECONDS
    return _Evaluator(cap if deadline is None else min(deadline, cap)).value(tree.body)


def _check_tree(root: ast.expr, text: str) -> None:
    """Refuse the first node, in reading order, outside the allow-list or beyond a cap."""
    nodes = 0
    stack: list[tuple[ast.expr, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise CalculationError(f"the expression has more than {MAX_NODES} parts")
        if depth > MAX_DEPTH:
            raise CalculationError(f"the expression nests operations deeper than {MAX_DEPTH}")
        refusal = _refusal(node)
        if refusal is not None:
            fragment = ast.get_source_segment(text, node) or ""
            if len(fragment) > 60:
                fragment = fragment[:57] + "..."
            raise CalculationError(f"not allowed: {refusal}, in `{fragment}`")
        children = [child for child in ast.iter_child_nodes(node) if isinstance(child, ast.expr)]
        stack.extend((child, depth + 1) for child in reversed(children))


def _refusal(node: ast.expr) -> str | None:
    """What about ``node`` itself is not allowed (a noun phrase), or None when it is allowed."""
    match node:
        case ast.Constant(value=value):
            if type(value) in (int, float):
                return None
            return _CONSTANT_KINDS.get(type(value), repr(value))
        case ast.UnaryOp(op=ast.UAdd() | ast.USub()):
            return None
        case ast.UnaryOp(op=op) | ast.BinOp(op=op):
            if type(op) in _BINARY:
                return None
            return f"the operator {_OPERATOR_SYMBOLS.get(type(op), type(op).__name__)!r}"
        case ast.Name(id=name):
            if name in _FUNCTIONS or name in _CONSTANTS:
                return None
            return f"the name {name!r} (allowed: {_ALLOWED_NAMES})"
        case ast.Call(func=func, keywords=keywords):
            if keywords:
                return "keyword arguments"
            if isinstance(func, ast.Name):
                if func.id in _FUNCTIONS:
                    return None
                return f"calling {func.id!r} (allowed: {_ALLOWED_NAMES})"
            if type(func) in _REFUSED:
                # The walk reaches the callee next and names what it is (a lambda, an attribute).
                return None
            return "calling anything but an allowed function by its name"
        case _:
            return _REFUSED.get(type(node), f"{type(node).__name__} expressions")


class _Evaluator:
    """Computes a tree that :func:`_check_tree` accepted, checking every value it makes."""

    def __init__(self, deadline: float) -> None:
        self._deadline = deadline

    def value(self, node: ast.expr) -> Number:
        """The value of ``node`` (an accepted tree, so at most :data:`MAX_DEPTH` deep)."""
        if time.monotonic() > self._deadline:
            raise CalculationError("the evaluation ran out of time")
        match node:
            case ast.Constant(value=int() | float() as number):
                return _checked(number)
            case ast.Name(id=name):
                if name in _CONSTANTS:
                    return _CONSTANTS[name]
                raise CalculationError(f"{name} is a function: call it, as in {name}(2)")
            case ast.UnaryOp(op=ast.USub(), operand=operand):
                return -self.value(operand)
            case ast.UnaryOp(op=ast.UAdd(), operand=operand):
                return +self.value(operand)
            case ast.BinOp(left=left, op=op, right=right):
                return _binary(_BINARY[type(op)], self.value(left), self.value(right))
            case ast.Call(func=ast.Name(id=name), args=args):
                return _call(name, [self.value(arg) for arg in args])
        raise AssertionError(f"_check_tree let through {type(node).__name__}")


def _binary(symbol: str, a: Number, b: Number) -> Number:
    """``a <symbol> b``, refused when a cap would be exceeded, and only then computed."""
    if symbol == "**":
        return _power(a, b)
    if symbol == "*" and isinstance(a, int) and isinstance(b, int):
        # The product of an m-bit and an n-bit integer has m + n - 1 or m + n bits.
        bits = a.bit_length() + b.bit_length() - 1
        if bits > MAX_INT_BITS:
            raise _too_large("the product", bits)
    try:
        match symbol:
            case "+":
                result = a + b
            case "-":
                result = a - b
            case "*":
                result = a * b
            case "/":
                result = a / b
            case "//":
                result = a // b
            case _:
                result = a % b
    except ZeroDivisionError:
        raise CalculationError(f"division by zero in {symbol}") from None
    except OverflowError:
        raise CalculationError(f"overflow in {symbol}: a number is too large for a float") from None
    return _checked(result)


def _power(a: Number, b: Number) -> Number:
    """``a ** b``, refused when ``|b|`` or the estimated size of the result is over a cap."""
    if abs(b) > MAX_EXPONENT:
        raise CalculationError(
            f"the exponent {_show(b)} is too large: at most {MAX_EXPONENT} in absolute value"
        )
    if isinstance(a, int) and isinstance(b, int):
        if b >= 0 and abs(a) > 1 and b * math.log2(abs(a)) > MAX_INT_BITS:
            raise _too_large(f"{_show(a)} ** {b}", b * math.log2(abs(a)))
        if b < 0 and a == 0:
            raise CalculationError("division by zero in **: 0 to a negative power")
        try:
            return _checked(a**b)
        except OverflowError:
            raise CalculationError("overflow in **: the result is too large for a float") from None
    try:
        # math.pow, unlike **, refuses a negative base to a fractional power (a complex result).
        return _checked(math.pow(a, b))
    except ValueError:
        raise CalculationError(
            "math domain error in **: a negative number to a fractional power, "
            "or zero to a negative power"
        ) from None
    except OverflowError:
        raise CalculationError("overflow in **: the result is too large for a float") from None


def _call(name: str, args: list[Number]) -> Number:
    """The allowed function ``name`` applied to ``args``, after checking how many there are."""
    function, fewest, most = _FUNCTIONS[name]
    if most is None and len(args) < fewest:
        raise CalculationError(f"{name}() takes at least {fewest} arguments, not {len(args)}")
    if most is not None and not fewest <= len(args) <= most:
        expected = "1 argument" if fewest == most == 1 else f"{fewest} or {most} arguments"
        raise CalculationError(f"{name}() takes {expected}, not {len(args)}")
    if name == "round" and len(args) == 2:
        ndigits = args[1]
        if not isinstance(ndigits, int) or abs(ndigits) > MAX_ROUND_DIGITS:
            raise CalculationError(
                f"round()'s second argument must be an integer from {-MAX_ROUND_DIGITS} "
                f"to {MAX_ROUND_DIGITS}, not {_show(ndigits)}"
            )
    try:
        return _checked(function(*args))
    except ValueError:
        raise CalculationError(f"math domain error: {name}() is undefined there") from None
    except ZeroDivisionError:
        raise CalculationError(f"division by zero in {name}()") from None
    except OverflowError:
        raise CalculationError(f"overflow in {name}(): a number is too large") from None


def _checked(value: Number) -> Number:
    """``value`` itself, unless it is an integer over the size cap or a float not finite."""
    if isinstance(value, int):
        if value.bit_length() > MAX_INT_BITS:
            raise _too_large("the result", value.bit_length())
        return value
    if not math.isfinite(value):
        raise CalculationError(f"the result is not a finite number ({value})")
    return value


def _too_large(what: str, bits: float) -> CalculationError:
    """The refusal of an integer of about ``bits`` bits."""
    digits = int(bits * math.log10(2)) + 1
    return CalculationError(
        f"{what} would have about {digits} digits; integers are limited to {_MAX_INT_DIGITS} digits"
    )


def _show(value: Number) -> str:
    """``value`` as text for a message, without converting a huge integer to decimal."""
    if isinstance(value, int) and value.bit_length() > 64:
        return f"(a number of about {int(value.bit_length() * math.log10(2)) + 1} digits)"
    return repr(value)


class CalculatorTool:
    """The ``calculator`` tool: ``{"expression": "..."}`` -> ``{"expression", "result"}``.

    Refusals and failures (a name or syntax outside the allow-list, a cap, division by zero)
    are results with ``is_error`` set whose text says what went wrong.
    """

    name = "calculator"
    description = (
        "Evaluate an arithmetic expression exactly (integers stay integers). Supports numbers, "
        "+ - * / // % ** and parentheses, the functions sqrt, log (x or x, base), log10, exp, "
        "sin, cos, tan (radians), floor, ceil, abs, round (x or x, ndigits), min, max, and the "
        "constants pi and e. Example: 2 * (3 + sqrt(16)) ** 2."
    )
    parameters: Mapping[str, Any] = {
        "type": "object",
        "properties": {
            "expression": {
                "type": "string",
                "description": "The expression, in Python syntax, e.g. 7 // 2 + 10 % 3.",
                "maxLength": MAX_LENGTH,
            }
        },
        "required": ["expression"],
        "additionalProperties": False,
    }

    async def call(self, arguments: Mapping[str, Any], context: ToolContext) -> ToolResult:
        """Evaluate ``arguments["expression"]`` by ``context.deadline``."""
        expression = arguments.get("expression")
        if not isinstance(expression, str):
            return ToolResult("expression must be a string", is_error=True)
        if context.time_left() <= 0:
            return ToolResult("no time is left for this call", is_error=True)
        try:
            result = evaluate(expression, deadline=context.deadline)
        except CalculationError as exc:
            context.log.debug("calculator refused %.80r: %s", expression, exc)
            return ToolResult(f"cannot evaluate the expression: {exc}", is_error=True)
        return ToolResult({"expression": expression, "result": result})
