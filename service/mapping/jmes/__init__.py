"""JMESPath for mappings: the added functions, compiling to closures, static checks.

``functions`` is the function library, ``compiler`` turns a parsed expression into a Python
closure (the only module touching jmespath internals), ``analysis`` checks expressions when a
mapping is loaded. The rest of mapping imports from here.
"""

from service.mapping.jmes.analysis import (
    cannot_fail,
    compile_expression,
    literal_value,
    read_paths,
    reads_field,
    root_field,
    top_fields,
)
from service.mapping.jmes.compiler import Evaluator, evaluator
from service.mapping.jmes.functions import FUNCTION_NAMES, FUNCTIONS, OPTIONS, FunctionFailed

__all__ = [
    "FUNCTIONS",
    "FUNCTION_NAMES",
    "OPTIONS",
    "Evaluator",
    "FunctionFailed",
    "cannot_fail",
    "compile_expression",
    "evaluator",
    "literal_value",
    "read_paths",
    "reads_field",
    "root_field",
    "top_fields",
]
