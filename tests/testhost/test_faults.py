"""A bounded sample of the fault campaign (tests/faults): each fault twice, at two moments, in the
session's test host; every invariant must hold after sdctr's own recovery."""

from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path

import pytest
from helpers.testhost import Machine

pytestmark = pytest.mark.testhost


def _faults():  # type: ignore[no-untyped-def]
    path = str(Path(__file__).resolve().parents[1] / "faults")
    loader = importlib.machinery.SourceFileLoader("faults", path)
    spec = importlib.util.spec_from_loader("faults", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_a_sample_of_the_fault_campaign_leaves_no_violation(testhost: Machine) -> None:
    faults = _faults()
    results = faults.campaign(testhost, 2, faults.HOST_FAULTS)
    bad = {f: r for f, r in results.items() if r[2]}
    assert not bad, faults.table(results) + "\n" + "\n".join(f"{f}: {r[3]}" for f, r in bad.items())
