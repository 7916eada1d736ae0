"""``measure`` refuses a class instead of replacing it with a function.

``@collector.measure("x")`` above ``class Resizer`` made ``Resizer`` a plain function:
``isinstance(obj, Resizer)`` raised ``TypeError: isinstance() arg 2 must be a type``,
and subclassing it failed."""

from __future__ import annotations

import pytest

from pepperpy.event import MetricsCollector


def test_a_class_is_refused_naming_what_to_decorate() -> None:
    collector = MetricsCollector()

    class Resizer:
        def __init__(self, size: int) -> None:
            self.size = size

    with pytest.raises(TypeError, match=r"cannot decorate class .*Resizer.*decorate its methods"):
        collector.measure("resize")(Resizer)
    assert collector.get_metrics("resize").count == 0


def test_methods_and_callable_instances_are_still_measured() -> None:
    collector = MetricsCollector()

    class Resizer:
        @collector.measure("init")
        def __init__(self, size: int) -> None:
            self.size = size

        def __call__(self, factor: int) -> int:
            return self.size * factor

    resizer = Resizer(3)
    assert isinstance(resizer, Resizer)
    measured = collector.measure("call")(resizer)
    assert measured(2) == 6
    assert collector.get_metrics("init").count == 1
    assert collector.get_metrics("call").count == 1
