"""Case types are data: their status labels are keyed by the registry's locales and read through its fallbacks."""

from __future__ import annotations

import pytest

from kernel.locales import LOCALES
from tracker.casetypes import BUILTIN, CaseTypeDef


@pytest.mark.parametrize("spec", BUILTIN, ids=[spec["code"] for spec in BUILTIN])
def test_every_builtin_status_is_labelled_in_every_supported_locale(spec: dict) -> None:
    for status in spec["definition"]["statuses"]:
        labels = status["labels"]
        assert set(labels) == set(LOCALES.supported), status["code"]
        assert all(text.strip() for text in labels.values()), status["code"]


def test_a_label_falls_back_from_region_to_language_to_english_to_the_code() -> None:
    baggage = CaseTypeDef.parse(code="baggage", prefix="BAG", name="Baggage", definition=BUILTIN[0]["definition"])
    assert baggage.label("located", "de-AT") == "Gefunden: Ihr Gepäckstück wurde gefunden"
    assert baggage.label("located", "ja") == "Found: your bag has been located"
    assert baggage.label("no_such_status", "de") == "no_such_status"
