"""Arithmetic over metric names for `derived` metrics: parsed into a whitelisted tree, never eval'd."""

from __future__ import annotations

import ast
from collections.abc import Mapping

import numpy as np

_OPERATORS = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.divide}


class ExpressionError(ValueError):
    """The expression uses something other than numbers, metric names, + − × ÷ and parentheses."""


def parse(expr: str, allowed_names: set[str]) -> ast.Expression:
    """Parse and check `expr`; only the metric names in `allowed_names` may appear."""
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"cannot parse '{expr}': {exc.msg}") from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Expression | ast.Load | ast.operator | ast.unaryop):
            if isinstance(node, ast.operator) and type(node) not in _OPERATORS:
                raise ExpressionError(f"operator {type(node).__name__} is not allowed; use + - * /")
            if isinstance(node, ast.unaryop) and not isinstance(node, ast.USub | ast.UAdd):
                raise ExpressionError("only unary minus and plus are allowed")
            continue
        if isinstance(node, ast.BinOp | ast.UnaryOp):
            continue
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, int | float)
            and not isinstance(node.value, bool)
        ):
            continue
        if isinstance(node, ast.Name):
            if node.id not in allowed_names:
                raise ExpressionError(
                    f"'{node.id}' is not one of this metric's `metrics` ({', '.join(sorted(allowed_names))})"
                )
            continue
        raise ExpressionError(
            f"'{ast.unparse(node)}' is not allowed: only numbers, metric names, + - * / and ()"
        )
    return tree


def is_linear(tree: ast.Expression) -> bool:
    """True when the expression is a sum of its metrics scaled by numbers: no metric is
    multiplied by or divided by another metric, and nothing is divided by a metric."""

    def has_name(node: ast.AST) -> bool:
        return any(isinstance(n, ast.Name) for n in ast.walk(node))

    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp):
            if isinstance(node.op, ast.Mult) and has_name(node.left) and has_name(node.right):
                return False
            if isinstance(node.op, ast.Div) and has_name(node.right):
                return False
    return True


def divides_by_zero(tree: ast.Expression) -> str | None:
    """The first division by a number that is 0 (`won_revenue / 0`, `x / (1 - 1)`), if any:
    such a metric never has a value."""
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.BinOp)
            and isinstance(node.op, ast.Div)
            and not any(isinstance(n, ast.Name) for n in ast.walk(node.right))
        ):
            divisor = evaluate(ast.Expression(body=node.right), {})
            if not np.isfinite(divisor) or float(divisor) == 0.0:
                return ast.unparse(node)
    return None


def evaluate(tree: ast.Expression, values: Mapping[str, np.ndarray]) -> np.ndarray:
    """Evaluate a parsed tree element-wise; division by zero gives NaN (no value), never inf."""

    def walk(node: ast.AST) -> np.ndarray:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant):
            return np.asarray(float(node.value))
        if isinstance(node, ast.Name):
            return np.asarray(values[node.id], dtype="float64")
        if isinstance(node, ast.UnaryOp):
            operand = walk(node.operand)
            return -operand if isinstance(node.op, ast.USub) else operand
        if isinstance(node, ast.BinOp):
            left, right = walk(node.left), walk(node.right)
            with np.errstate(divide="ignore", invalid="ignore"):
                result = _OPERATORS[type(node.op)](left, right)
            return np.where(np.isfinite(result), result, np.nan)
        raise ExpressionError(f"unexpected node {type(node).__name__}")  # pragma: no cover

    return walk(tree)
