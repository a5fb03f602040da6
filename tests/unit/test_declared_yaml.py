"""A declared file's YAML, read by the generator's quick constructor, is what PyYAML's safe
loader makes of it, for plain documents and for the rest (merge keys, dates, aliases)."""

from __future__ import annotations

import pytest
import yaml

from sdctr.options import _construct

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("text", [
    'image: busybox\nports: ["80:80", 8080]\nenv: {A: 1, B: ~}\nread_only: yes\n',
    "a: [x, 2.5, yes, no, null, ~, 0x10, 0o17, 1_000, '1', 1:30, .inf, -.5, 1e3]\nc: {d: {e: [f]}}\n",
    "base: &b {x: 1}\nm:\n  <<: *b\n  y: 2\n",
    "t: 2001-12-14\n",
    "a: &a [1, *a]\n",
    "x: !!binary aGk=\n",
    "x: !!str 12\ny: !!int '7'\n",
    "1: one\ntrue: two\n~: three\n",
])
def test_quick_construction_is_pyyamls(text: str) -> None:
    loader = yaml.CSafeLoader(text)
    ours = _construct(loader, loader.get_single_node())
    assert repr(ours) == repr(yaml.load(text, Loader=yaml.CSafeLoader))


def test_an_unhashable_key_is_pyyamls_error() -> None:
    loader = yaml.CSafeLoader("? [1]\n: 2\n")
    with pytest.raises(yaml.constructor.ConstructorError, match="unhashable"):
        _construct(loader, loader.get_single_node())
