"""sdctr.record: the frozen records that replaced dataclasses on the run path."""

from __future__ import annotations

import pytest

from sdctr.record import Record

pytestmark = pytest.mark.unit


class Point(Record):
    x: int
    y: int = 0
    tags: dict[str, str] = {}  # noqa: RUF012 (copied per record)


class Point3(Point):
    z: int = 0


def test_fields_defaults_and_keywords() -> None:
    assert Point(1) == Point(x=1, y=0)
    assert Point(1, 2).y == 2
    assert Point3(1, 2, z=3)._fields == ("x", "y", "tags", "z")
    assert repr(Point(1, 2)) == "Point(x=1, y=2, tags={})"


def test_a_dict_default_is_not_shared() -> None:
    a, b = Point(1), Point(2)
    a.tags["k"] = "v"
    assert b.tags == {}


@pytest.mark.parametrize("call", [Point, lambda: Point(1, 2, {}, 4), lambda: Point(1, x=2),
                                  lambda: Point(1, w=2)])
def test_wrong_fields_are_type_errors(call: object) -> None:
    with pytest.raises(TypeError):
        call()  # type: ignore[operator]


def test_immutable_and_replace() -> None:
    p = Point(1, 2)
    with pytest.raises(AttributeError):
        p.x = 5  # type: ignore[misc]
    q = p.replace(y=3)
    assert (p.y, q.y, q.x) == (2, 3, 1)


def test_equality_and_hash_by_value_and_class() -> None:
    assert Point(1, 2) != Point3(1, 2)
    assert len({Point3(1, 2), Point3(1, 2), Point3(1, 3)}) == 2


def test_as_dict_is_plain_data() -> None:
    class Line(Record):
        ends: tuple[Point, ...]

    assert Line((Point(1), Point(2, 3))).as_dict() == {
        "ends": ({"x": 1, "y": 0, "tags": {}}, {"x": 2, "y": 3, "tags": {}})}
