"""The delivery messages: the PIN is never cut, the window and the ETA are in the customer's zone,
and every one still fits two SMS segments in every language with the longest plausible values."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from notifications.customer_messages import render_email, render_sms
from notifications.sms_text import segments
from tests.notifications.test_customer_messages import LOCALES, LONG_URL, MONDAY, longest, view

UTC = dt.UTC
EVENING = (dt.datetime(2026, 11, 2, 23, 0, tzinfo=UTC), dt.datetime(2026, 11, 3, 1, 0, tzinfo=UTC))
ETA = dt.datetime(2026, 11, 4, 9, 30, tzinfo=UTC)
DELIVERY_KINDS = ("delivery_confirmed", "out_for_delivery", "delivered")


def test_out_for_delivery_sms_gives_the_pin() -> None:
    sms = render_sms(view(kind="out_for_delivery", pin="0427", holder_name="FastCourier", now=MONDAY))
    assert "0427" in sms and "on its way" in sms


def test_a_pin_that_is_not_four_digits_is_never_printed() -> None:
    sms = render_sms(view(kind="out_for_delivery", pin="<b>1", now=MONDAY))
    assert "<b>" not in sms and "PIN" not in sms


def test_the_confirmed_window_is_in_the_customers_zone() -> None:
    sms = render_sms(view(kind="delivery_confirmed", timezone="America/New_York", window_start=EVENING[0],
                          window_end=EVENING[1], now=MONDAY))
    assert "is confirmed on Monday at 6:00 PM-8:00 PM." in sms  # (the en dash, in GSM-7)  # 23:00-01:00 UTC is 18:00-20:00 in New York


def test_an_update_says_when_the_item_is_expected_and_the_email_too() -> None:
    sms = render_sms(view(eta=ETA, now=MONDAY))
    assert "Expected on Wednesday at 9:30 AM." in sms  # London time, within the week: the weekday
    subject, text, html = render_email(view(eta=ETA, now=MONDAY))
    assert "Expected by" in text and "Expected by" in html
    past = render_sms(view(eta=MONDAY - dt.timedelta(hours=1), now=MONDAY))
    assert "Expected" not in past  # a promise already past is not repeated


def test_delivered_email_points_to_the_proof() -> None:
    subject, text, _ = render_email(view(kind="delivered", now=MONDAY))
    assert "delivered" in subject and "proof of delivery" in text.lower()


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("kind", DELIVERY_KINDS)
def test_delivery_sms_fit_two_segments_and_keep_the_pin(kind: str, locale: str) -> None:
    message = dataclasses.replace(longest(kind, locale, "baggage", MONDAY), pin="0427", eta=ETA,
                                  window_start=EVENING[0], window_end=EVENING[1])
    sms = render_sms(message)
    size = segments(sms)
    assert size.count <= 2 and size.encoding == "GSM-7", (size, sms)
    assert sms.endswith(" " + LONG_URL)
    if kind == "out_for_delivery":
        assert "0427" in sms
