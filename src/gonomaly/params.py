"""Hyper-parameters declared once, in ``__init__``, with their checks as annotations.

A detector's ``__init__`` declares each hyper-parameter as a keyword argument annotated with
``Annotated[type, Check(...)]`` and stores it as given. ``Estimator.get_params`` reads the
names off every ``__init__`` in the class hierarchy (as scikit-learn's ``BaseEstimator`` does
for one), and ``check_params`` runs the checks, at ``fit`` and at ``load`` alike: a new
hyper-parameter needs nothing beyond its line in ``__init__``.
"""

from __future__ import annotations

import inspect
import math
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

from gonomaly.errors import GonomalyError


@dataclass(frozen=True)
class Check:
    """A value's check: ``test(value)`` is True for a valid value; ``expected`` says what is."""

    test: Callable[[Any], bool]
    expected: str | Callable[[], str]

    def __call__(self, name: str, value: Any) -> None:
        """Raise a one-line GonomalyError naming the value (a parser's own error as it is)."""
        try:
            valid = bool(self.test(value))
        except (TypeError, ValueError):
            valid = False
        if not valid:
            expected = self.expected() if callable(self.expected) else self.expected
            raise GonomalyError(f"{name} {str(value)[:40]!r}: {expected}")


def integer(low: int, high: int) -> Check:
    return Check(lambda v: type(v) is int and low <= v <= high, f"must be an integer in [{low}, {high}]")


def number(low: float, high: float = math.inf, *, open_low: bool = False) -> Check:
    def test(v):
        return (type(v) in (int, float) and math.isfinite(v)
                and (v > low if open_low else v >= low) and v <= high)

    bounds = f"{'(' if open_low else '['}{low:g}, {high:g}]"
    return Check(test, f"must be a finite number in {bounds}")


def one_of(choices: Callable[[], Iterable[str]] | Iterable[str]) -> Check:
    """A name among ``choices`` (a callable is asked each time: a registry filled later)."""
    names = choices if callable(choices) else (lambda: tuple(choices))
    return Check(lambda v: isinstance(v, str) and v in names(), lambda: f"unknown (use {', '.join(names())})")


def optional(check: Check) -> Check:
    """``None`` (the model's own default) or a value that passes ``check``."""
    return Check(lambda v: v is None or check.test(v), check.expected)


def parsed(parse: Callable[[str], Any], max_length: int = 100) -> Check:
    """A string that ``parse`` accepts (its own GonomalyError says what is wrong)."""
    return Check(lambda v: isinstance(v, str) and len(v) < max_length and parse(v) is not None,
                 f"must be a string of under {max_length} characters")


RUNTIME = "runtime"  # an annotation marker: where and how to run, not saved with the model


@cache
def declared(cls: type) -> dict[str, tuple[Any, tuple]]:
    """``{name: (default, annotations)}`` of the keyword-only parameters of every ``__init__``
    in ``cls``'s hierarchy (base classes first)."""
    found: dict[str, tuple[Any, tuple]] = {}
    for klass in reversed(cls.__mro__):
        init = klass.__dict__.get("__init__")
        if klass is object or init is None:
            continue
        hints = typing.get_type_hints(init, include_extras=True)
        for p in inspect.signature(init).parameters.values():
            if p.kind is p.KEYWORD_ONLY:
                found[p.name] = (p.default, getattr(hints.get(p.name), "__metadata__", ()))
    return found


class Estimator:
    """scikit-learn's parameter protocol over keyword-only, annotated ``__init__`` arguments."""

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {name: getattr(self, name) for name in declared(type(self))}

    def set_params(self, **params: Any) -> "Estimator":
        unknown = set(params) - set(declared(type(self)))
        if unknown:
            raise GonomalyError(f"{type(self).__name__}: unknown hyper-parameter {sorted(unknown)[0]}")
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def saved_params(self) -> dict[str, Any]:
        """The hyper-parameters a saved model records (runtime options left out)."""
        return {name: value for name, value in self.get_params().items()
                if RUNTIME not in declared(type(self))[name][1]}

    def check_params(self) -> None:
        """Every declared check, on the values as given."""
        for name, (_, checks) in declared(type(self)).items():
            for check in checks:
                if isinstance(check, Check):
                    check(name, getattr(self, name))
