"""A safe arithmetic evaluator, walking the expression's :mod:`ast` (nothing is ever ``eval``-ed).

Allowed: integer and decimal numbers, ``+ - * / // % **``, unary ``-``/``+``, parentheses, the functions
in :data:`FUNCTIONS` and the constants in :data:`CONSTANTS`. Everything else (other names, attribute
access, subscripts, strings, comparisons, other calls, keyword arguments) is refused with an
:class:`~aria.errors.InvalidInput` that says what is not allowed.

Limits keep a hostile or mistaken expression cheap: at most :data:`MAX_LENGTH` characters, exponents of at
most :data:`MAX_EXPONENT` in size, and no intermediate integer longer than :data:`MAX_INT_BITS` bits.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

from aria.errors import InvalidInput

__all__ = [
    "CONSTANTS",
    "FUNCTIONS",
    "MAX_EXPONENT",
    "MAX_INT_BITS",
    "MAX_LENGTH",
    "evaluate",
    "format_number",
]

MAX_LENGTH = 500
MAX_EXPONENT = 10_000
#: About 1,200 decimal digits.
MAX_INT_BITS = 4096

Number = int | float

CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}


def _log(x: Number, base: Number | None = None) -> float:
    return math.log(x) if base is None else math.log(x, base)


def _round(x: Number, ndigits: Number | None = None) -> Number:
    if ndigits is None:
        return round(x)
    if not isinstance(ndigits, int) and not float(ndigits).is_integer():
        raise InvalidInput("round() takes a whole number of digits")
    return round(x, max(-400, min(400, int(ndigits))))


def _min(*args: Number) -> Number:
    return min(args)


def _max(*args: Number) -> Number:
    return max(args)


#: name -> (function, least and most arguments)
FUNCTIONS: dict[str, tuple[Callable[..., Number], int, int]] = {
    "sqrt": (math.sqrt, 1, 1),
    "sin": (math.sin, 1, 1),
    "cos": (math.cos, 1, 1),
    "tan": (math.tan, 1, 1),
    "log": (_log, 1, 2),
    "exp": (math.exp, 1, 1),
    "abs": (abs, 1, 1),
    "round": (_round, 1, 2),
    "min": (_min, 1, 20),
    "max": (_max, 1, 20),
}

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Number]] = {ast.USub: operator.neg, ast.UAdd: operator.pos}
_SYMBOLS = {
    ast.BitXor: "^",
    ast.BitAnd: "&",
    ast.BitOr: "|",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.MatMult: "@",
}


def evaluate(expression: str) -> Number:
    """The value of an arithmetic expression; :class:`~aria.errors.InvalidInput` says why it has none."""
    text = expression.strip()
    if not text:
        raise InvalidInput("the expression is empty")
    if len(text) > MAX_LENGTH:
        raise InvalidInput(f"the expression is too long ({len(text)} characters, at most {MAX_LENGTH})")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise InvalidInput(f"cannot read the expression {text!r}: it is not valid arithmetic") from exc
    try:
        return _eval(tree.body)
    except ZeroDivisionError as exc:
        raise InvalidInput("division by zero") from exc
    except OverflowError as exc:
        raise InvalidInput("the result is too large") from exc
    except RecursionError as exc:
        raise InvalidInput("the expression is nested too deeply") from exc


def _eval(node: ast.expr) -> Number:
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise InvalidInput(f"only numbers are allowed, not {node.value!r}")
        return _checked(node.value)
    if isinstance(node, ast.BinOp):
        function = _BINARY.get(type(node.op))
        if function is None:
            symbol = _SYMBOLS.get(type(node.op), type(node.op).__name__)
            hint = " (use ** for powers)" if symbol == "^" else ""
            raise InvalidInput(f"the operator {symbol} is not supported{hint}")
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow):
            _check_power(left, right)
        return _checked(function(left, right))
    if isinstance(node, ast.UnaryOp):
        if type(node.op) not in _UNARY:
            raise InvalidInput("only - and + may come before a number")
        return _checked(_UNARY[type(node.op)](_eval(node.operand)))
    if isinstance(node, ast.Name):
        if node.id in CONSTANTS:
            return CONSTANTS[node.id]
        hint = " (it is a function: call it, e.g. sqrt(2))" if node.id in FUNCTIONS else ""
        raise InvalidInput(f"unknown name {node.id!r}{hint}; the constants are {', '.join(CONSTANTS)}")
    if isinstance(node, ast.Call):
        return _call(node)
    if isinstance(node, ast.Attribute):
        raise InvalidInput(f"attribute access (.{node.attr}) is not allowed")
    raise InvalidInput(f"{_describe(node)} is not allowed in arithmetic")


def _call(node: ast.Call) -> Number:
    if isinstance(node.func, ast.Attribute):
        raise InvalidInput(f"attribute access (.{node.func.attr}) is not allowed")
    if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
        name = node.func.id if isinstance(node.func, ast.Name) else _describe(node.func)
        raise InvalidInput(f"calling {name} is not allowed; the functions are {', '.join(FUNCTIONS)}")
    name = node.func.id
    function, least, most = FUNCTIONS[name]
    if node.keywords or any(isinstance(arg, ast.Starred) for arg in node.args):
        raise InvalidInput(f"{name}() takes plain arguments only")
    if not least <= len(node.args) <= most:
        count = str(least) if least == most else f"{least} to {most}"
        raise InvalidInput(f"{name}() takes {count} argument(s), got {len(node.args)}")
    args = [_eval(arg) for arg in node.args]
    try:
        return _checked(function(*args))
    except ValueError as exc:
        shown = ", ".join(format_number(a) for a in args)
        raise InvalidInput(f"{name}({shown}) is undefined ({exc})") from exc


def _check_power(base: Number, exponent: Number) -> None:
    if abs(exponent) > MAX_EXPONENT:
        raise InvalidInput(f"the exponent {format_number(exponent)} is too large (at most {MAX_EXPONENT})")
    whole = isinstance(base, int) and isinstance(exponent, int) and exponent > 0
    if whole and abs(base) > 1 and (abs(int(base)).bit_length() - 1) * exponent > MAX_INT_BITS:
        raise InvalidInput("the result is too large")


def _checked(value: Any) -> Number:
    if isinstance(value, complex):
        raise InvalidInput("the result is not a real number")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidInput("the result is too large" if not math.isnan(value) else "the result is undefined")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise InvalidInput("the result is too large")
    if not isinstance(value, int | float):
        raise InvalidInput(f"the result is not a number ({type(value).__name__})")
    return value


def _describe(node: ast.AST) -> str:
    names = {
        ast.Compare: "comparison",
        ast.BoolOp: "and/or",
        ast.Subscript: "indexing",
        ast.Lambda: "lambda",
        ast.IfExp: "if/else",
        ast.Tuple: "a tuple",
        ast.List: "a list",
        ast.Dict: "a dict",
        ast.Set: "a set",
    }
    return names.get(type(node), type(node).__name__)


def format_number(value: Number) -> str:
    """A number as a person would say it: ``4``, ``0.333333333333``, ``1.5e+20``."""
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return format(value, ".12g")
    return str(value)
