"""The demo's summary in plain words: a weak classifier is called weak, times read as durations."""

from __future__ import annotations

from visae.reference_study import _weak_classifier, duration


def test_a_weak_classifier_is_called_weak_with_what_to_do():
    row = _weak_classifier(0.36, 22)["classifier warning"]
    assert "weak classifier: val top-1 0.36 is below 0.5" in row and "full demo" in row and "more epochs" in row
    assert "near chance (0.05 for 22 classes)" in _weak_classifier(0.07, 22)["classifier warning"]
    assert "near chance (0.50 for 2 classes)" in _weak_classifier(0.7, 2)["classifier warning"]
    assert _weak_classifier(0.93, 22) == {}


def test_durations_read_as_plain_words():
    assert [duration(s) for s in (0.42, 11.6, 156.2, 3900)] == ["0.4 s", "12 s", "2 min 36 s", "1 h 5 min"]
