"""Registry of per-trace MI estimators: a name -> a factory of scorers against one gold vector.

An estimator is called once per (trace, layer) with the gold representation ``y`` ([d]) and the settings it
reads from ``MIConfig.scoring`` (``sigma``, ``eps``); the object it returns maps the trace's step states ``h``
([T, d]) to one score per step ([T], float). The MI pipeline picks it by ``MIConfig.scoring.estimator``
(``reasonlens mi --estimator NAME``). A new estimator is one file in ``reasonlens/mi/`` with a
``@register_estimator("name", "what it computes")`` class or function and its module in the import list of
``reasonlens/mi/__init__.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import torch

from reasonlens.errors import UserError


class TraceScorer(Protocol):
    def __call__(self, h: torch.Tensor) -> torch.Tensor: ...


EstimatorFactory = Callable[..., TraceScorer]  # factory(y, sigma=..., eps=...) -> scorer


@dataclass(frozen=True)
class Estimator:
    name: str
    factory: EstimatorFactory
    description: str

    def scorer(self, y: torch.Tensor, sigma, eps: float) -> TraceScorer:
        return self.factory(y, sigma=sigma, eps=eps)

    def describe(self) -> str:
        return f"{self.name} ({self.description})" if self.description else self.name


_ESTIMATORS: dict[str, Estimator] = {}


def register_estimator(name: str, description: str = "") -> Callable[[EstimatorFactory], EstimatorFactory]:
    """Decorator: ``@register_estimator("paper_hsic", "...")`` on a class or function ``(y, sigma, eps)``."""

    def decorate(factory: EstimatorFactory) -> EstimatorFactory:
        if name in _ESTIMATORS:
            raise ValueError(f"MI estimator '{name}' is registered twice")
        _ESTIMATORS[name] = Estimator(name, factory, description)
        return factory

    return decorate


def estimator_names() -> list[str]:
    return list(_ESTIMATORS)


def get_estimator(name: str) -> Estimator:
    try:
        return _ESTIMATORS[name]
    except KeyError:
        raise UserError(f"unknown --estimator '{name}' (choose from {', '.join(_ESTIMATORS)})") from None
