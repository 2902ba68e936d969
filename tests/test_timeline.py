"""The age timeline: ages <-> positions, the labels shown and the labels in file names."""

from __future__ import annotations

import pytest

from core.text import ascii_text, file_label
from core.timeline import age_to_position, position_label, position_to_age

DECADES = [(0, 9), (10, 19), (20, 29), (30, 39), (40, 49), (50, 59), (60, 69), (70, None)]
LABELS = ["0\u20139", "10\u201319", "20\u201329", "30\u201339", "40\u201349", "50\u201359", "60\u201369", "70+"]


def test_age_and_timeline_position_map_both_ways():
    assert age_to_position(5, DECADES) == 0.0  # a group's centre is its position
    assert age_to_position(45, DECADES) == 4.0
    assert age_to_position(50, DECADES) == pytest.approx(4.5)
    assert age_to_position(2, DECADES) == 0.0 and age_to_position(99, DECADES) == 7.0  # clamped
    for age in (7.5, 23.0, 38.2, 61.0, 74.0):
        assert position_to_age(age_to_position(age, DECADES), DECADES) == pytest.approx(age)
    assert position_label(6.0, LABELS, DECADES) == "60\u201369"
    assert position_label(4.5, LABELS, DECADES) == "about 50"
    assert position_label(4.5, LABELS) == "40\u201349 / 50\u201359"  # without the groups: the two neighbours


def test_labels_become_ascii_file_names():
    assert file_label("60\u201369") == "60-69" and file_label("about 50") == "about-50"
    assert file_label("40\u201349 / 50\u201359") == "40-49---50-59" and file_label("70+") == "70+"
    assert ascii_text("caf\u00e9 \u2212 2") == "cafe - 2"
