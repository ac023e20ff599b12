"""The registered evaluation methods, one file each; importing this package registers them.

A new method: write `interventions/methods/<name>.py` with a `Method` subclass decorated by
`@register_method("<name>")`, and add its module to the import line below (the one registration line).
"""

from reasonlens.interventions.methods import baseline, budget_force, nowait, rr, steer, suppress, ttts  # noqa: F401
from reasonlens.interventions.registry import (
    Method,
    ResolvedMethod,
    build_plugins,
    get_method,
    method_names,
    register_method,
)

__all__ = ["Method", "ResolvedMethod", "build_plugins", "get_method", "method_names", "register_method"]
