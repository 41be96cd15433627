"""JMESPath syntax trees compiled to Python closures.

jmespath's TreeInterpreter dispatches every node through Visitor.visit and type-checks every
function argument on each call. ``evaluator`` turns a parsed expression into nested closures
once instead; they do what the TreeInterpreter's visit_* methods do (jmespath 1.x,
visitor.py), node for node, so results and errors are the same. A function's argument types
are checked once here when the argument is a scalar literal. Node types without a closure are
run by the interpreter.

This is the one module that reaches into jmespath internals (``visitor._Expression``,
``visitor._equals``, ``visitor._is_actual_number``, ``Functions._type_check_single``); a
jmespath upgrade is checked by tests/mapping/jmes/test_compiler.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jmespath import exceptions as jexc
from jmespath import visitor
from jmespath.parser import ParsedResult
from jmespath.visitor import TreeInterpreter

from service.mapping.jmes.functions import FUNCTIONS, OPTIONS, arity_ok, pick_ranked, pick_ranks

Evaluator = Callable[[Any], Any]

#: Comparators that the closures run (TreeInterpreter._EQUALITY_OPS).
EQUALITY_OPS = frozenset({"eq", "ne"})

_INTERPRETER = TreeInterpreter(OPTIONS)
_SEQUENCE = frozenset({"subexpression", "index_expression", "pipe"})
# jmespath internals the closures reuse so that they behave exactly as the interpreter (the
# type stubs leave them out).
_jmespath_visitor: Any = visitor
_type_check_single: Callable[[Any, list[str], str], None] = getattr(  # noqa: B009
    FUNCTIONS, "_type_check_single"
)


def evaluator(compiled: ParsedResult) -> Evaluator:
    """A function evaluating ``compiled`` with the added functions.

    Same results and errors as ``compiled.search(value, options=OPTIONS)``, but the syntax
    tree is turned into nested closures once (see ``_closure``) instead of being walked node
    by node on every call.
    """
    return _closure(compiled.parsed)


class _Expression(visitor._Expression):
    """An ``&expr`` argument: what the interpreter passes, but running the closure.

    The class keeps jmespath's name on purpose: function signatures check argument types by
    the class name (``_Expression`` is the ``expref`` type).
    """

    def __init__(self, expression: Any, run: Evaluator) -> None:
        super().__init__(expression, _INTERPRETER)
        self._run = run

    def visit(self, node: Any, *args: Any, **kwargs: Any) -> Any:
        if node is self.expression and len(args) == 1 and not kwargs:
            return self._run(args[0])
        return self.interpreter.visit(node, *args, **kwargs)


def _is_false(value: Any) -> bool:
    """JMESPath falsiness, exactly as TreeInterpreter._is_false."""
    return value == "" or value == [] or value == {} or value is None or value is False  # noqa: PLR1714


def _interpreted(node: Any) -> Evaluator:
    def run(value: Any) -> Any:
        return _INTERPRETER.visit(node, value)

    return run


def _closure(node: Any) -> Evaluator:
    """A closure evaluating ``node`` as TreeInterpreter.visit(node, value) does."""
    kind = node.get("type")
    children: list[Any] = node.get("children", [])
    if kind == "field":
        return _field_chain((node["value"],))
    if kind in _SEQUENCE:
        if all(isinstance(c, dict) and c.get("type") == "field" for c in children):
            return _field_chain(tuple(c["value"] for c in children))
        return _sequence([_closure(child) for child in children])
    if kind == "literal":
        constant = node["value"]
        return lambda value: constant
    if kind in {"identity", "current"}:
        return lambda value: value
    if kind == "index":
        return _index(node["value"])
    if kind == "function_expression":
        return _function(node)
    if kind == "expref":
        expref = _Expression(children[0], _closure(children[0]))
        return lambda value: expref
    if kind == "multi_select_list":
        return _multi_select_list([_closure(child) for child in children])
    if kind in {"or_expression", "and_expression"}:
        return _logical(kind == "or_expression", _closure(children[0]), _closure(children[1]))
    if kind == "not_expression":
        return _not(_closure(children[0]))
    if kind == "projection":
        return _projection(_closure(children[0]), _closure(children[1]), None)
    if kind == "filter_projection":
        base, each, condition = (_closure(child) for child in children)
        return _projection(base, each, condition)
    if kind == "comparator" and node["value"] in EQUALITY_OPS:
        return _equality(node["value"] == "eq", _closure(children[0]), _closure(children[1]))
    return _interpreted(node)  # ordering comparators, slices, flatten, multi-select hashes...


def _field_chain(names: tuple[str, ...]) -> Evaluator:
    # TreeInterpreter.visit_field: value.get(name), None when the value has no .get. Once the
    # result is None every further field is None too, so the chain can stop there.
    if len(names) == 1:
        (name,) = names

        def field(value: Any) -> Any:
            try:
                return value.get(name)
            except AttributeError:
                return None

        return field

    def fields(value: Any) -> Any:
        for name in names:
            try:
                value = value.get(name)
            except AttributeError:
                return None
        return value

    return fields


def _sequence(steps: list[Evaluator]) -> Evaluator:
    def sequence(value: Any) -> Any:
        for step in steps:
            value = step(value)
        return value

    return sequence


def _index(position: int) -> Evaluator:
    def index(value: Any) -> Any:
        if not isinstance(value, list):
            return None
        try:
            return value[position]
        except IndexError:
            return None

    return index


def _multi_select_list(items: list[Evaluator]) -> Evaluator:
    def multi_select_list(value: Any) -> Any:
        if value is None:
            return None
        return [item(value) for item in items]

    return multi_select_list


def _logical(is_or: bool, left: Evaluator, right: Evaluator) -> Evaluator:
    if is_or:

        def or_expression(value: Any) -> Any:
            matched = left(value)
            return right(value) if _is_false(matched) else matched

        return or_expression

    def and_expression(value: Any) -> Any:
        matched = left(value)
        return matched if _is_false(matched) else right(value)

    return and_expression


def _not(operand: Evaluator) -> Evaluator:
    def not_expression(value: Any) -> Any:
        result = operand(value)
        if _jmespath_visitor._is_actual_number(result) and result == 0:
            return False
        return not result

    return not_expression


def _projection(base: Evaluator, each: Evaluator, condition: Evaluator | None) -> Evaluator:
    def projection(value: Any) -> Any:
        items = base(value)
        if not isinstance(items, list):
            return None
        collected = []
        for item in items:
            if condition is not None and _is_false(condition(item)):
                continue
            current = each(item)
            if current is not None:
                collected.append(current)
        return collected

    return projection


def _equality(equal: bool, left: Evaluator, right: Evaluator) -> Evaluator:
    def equality(value: Any) -> Any:
        same = _jmespath_visitor._equals(left(value), right(value))
        return same if equal else not same

    return equality


def _function(node: Any) -> Evaluator:
    name: str = node["value"]
    children: list[dict[str, Any]] = node["children"]
    spec = FUNCTIONS.FUNCTION_TABLE.get(name)
    if spec is None or not arity_ok(spec["signature"], len(children)):
        return _interpreted(node)  # raises as the interpreter does
    function = spec["function"]
    arguments = [_closure(child) for child in children]
    # Functions._type_check checks the first len(signature) arguments, in order, once all
    # are evaluated; a scalar literal's type is known now.
    checks: list[tuple[int, list[str]]] = []
    for position, argument in enumerate(spec["signature"]):
        types = argument["types"]
        if types and not _literal_fits(children[position], types, name):
            checks.append((position, types))
    check = _type_check_single
    if name == "pick" and all(_is_text(child) for child in children[1:]) and not checks:
        return _pick(arguments[0], pick_ranks(tuple(child["value"] for child in children[1:])))

    def call(value: Any) -> Any:
        resolved = [argument(value) for argument in arguments]
        for position, types in checks:
            check(resolved[position], types, name)
        return function(FUNCTIONS, *resolved)

    return call


def _is_text(node: Any) -> bool:
    return node.get("type") == "literal" and isinstance(node["value"], str)


def _pick(obj: Evaluator, ranks: dict[str, int]) -> Evaluator:
    """pick(obj, 'name', ...) of literal names: their tokens made once, here."""

    def pick(value: Any) -> Any:
        return pick_ranked(obj(value), ranks)

    return pick


def _literal_fits(node: Any, types: list[str], name: str) -> bool:
    """True when ``node`` is a scalar literal of an allowed type (no check needed per call)."""
    if node.get("type") != "literal" or isinstance(node["value"], (list, dict)):
        return False
    try:
        _type_check_single(node["value"], types, name)
    except jexc.JMESPathTypeError:
        return False
    return True
