"""engine.core.Check: an inequality decides pass/fail from its own numbers."""

import math

import pytest

from engine.core import Check


@pytest.mark.parametrize("measured, relation, reference, passed", [
    (1e-13, "<=", 1e-12, True), (1e-11, "<=", 1e-12, False), (3, ">=", 3, True),
    (2, ">", 3, False), (0.1, "<", 0.2, True), (math.nan, "<=", 1.0, False),
])
def test_inequalities_derive_passed(measured, relation, reference, passed):
    check = Check("c", "f", measured=measured, reference=reference, relation=relation)
    assert check.passed is passed and check.as_dict()["passed"] is passed


def test_other_relations_must_say_whether_they_passed():
    with pytest.raises(ValueError, match="give passed="):
        Check("c", "f", measured=1.0, reference=1.0, relation="≈")
    assert Check("c", "f", 1.0, 1.0, "≈", passed=True).passed
    # An explicit verdict (several conditions at once) is kept as given.
    assert not Check("c", "f", 0.0, 1.0, "<=", passed=False).passed
