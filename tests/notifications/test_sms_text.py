"""SMS encoding and length: GSM-7 vs UCS-2 counted as carriers count them, and fitting a text
into two segments without ever losing the status link."""

from __future__ import annotations

import pytest

from notifications.sms_text import GSM7_BASIC, GSM7_EXTENSION, Segments, fit, is_gsm7, segments, to_gsm7

LINK = "https://baton.example.com/s/" + "Z" * 32


# ---------------------------------------------------------------- counting


@pytest.mark.parametrize(
    ("length", "count"),
    [(1, 1), (160, 1), (161, 2), (306, 2), (307, 3), (459, 3), (460, 4)],
)
def test_gsm7_holds_160_alone_and_153_per_part_when_concatenated(length: int, count: int) -> None:
    assert segments("a" * length) == Segments("GSM-7", length, count)


def test_the_basic_table_has_its_128_characters_and_the_extension_table_its_ten() -> None:
    # 128 code points less ESC; the well-known surprises are in, the usual suspects out.
    assert len(GSM7_BASIC) == 127 and len(GSM7_EXTENSION) == 10
    assert is_gsm7("@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ¤¡ÄÖÑÜ§¿äöñüà")
    assert not any(is_gsm7(c) for c in "çêáíóú`’“–…\t\x1b")


def test_extension_characters_cost_two_septets() -> None:
    assert segments("€" * 80) == Segments("GSM-7", 160, 1)
    assert segments("€" * 81) == Segments("GSM-7", 162, 2)
    assert segments("a" * 159 + "[") == Segments("GSM-7", 161, 2)
    assert segments("{}[]~^|\\€\f") == Segments("GSM-7", 20, 1)


def test_an_extension_character_is_never_split_across_two_parts() -> None:
    # 306 septets would be two parts by division, but the escape and the euro sign cannot be
    # split at septet 153, so the euro sign opens part two and the text needs a third part.
    text = "a" * 152 + "€" + "a" * 152
    assert segments(text) == Segments("GSM-7", 306, 3)
    assert segments("a" * 151 + "€" + "a" * 153) == Segments("GSM-7", 306, 2)


@pytest.mark.parametrize(
    ("length", "count"),
    [(70, 1), (71, 2), (134, 2), (135, 3), (201, 3), (202, 4)],
)
def test_ucs2_holds_70_alone_and_67_per_part(length: int, count: int) -> None:
    assert segments("ê" * length) == Segments("UCS-2", length, count)


def test_one_character_outside_gsm7_makes_the_whole_text_ucs2() -> None:
    assert segments("a" * 69 + "’") == Segments("UCS-2", 70, 1)
    assert segments("a" * 70 + "’").count == 2
    assert segments("行李" * 35) == Segments("UCS-2", 70, 1)


def test_emoji_count_two_utf16_units_and_are_not_split_across_parts() -> None:
    assert segments("😀" * 35) == Segments("UCS-2", 70, 1)
    assert segments("😀" * 36) == Segments("UCS-2", 72, 2)
    # 134 units would be two parts, but the surrogate pair cannot straddle unit 67.
    assert segments("a" * 66 + "😀" + "a" * 66) == Segments("UCS-2", 134, 3)
    assert segments("a" * 65 + "😀" + "a" * 67) == Segments("UCS-2", 134, 2)


# ---------------------------------------------------------------- transliteration


def test_to_gsm7_keeps_the_letters_gsm7_has() -> None:
    kept = "Grüße aus Köln: Äpfel, Öl, Übermaß. Café à Nîmes? ¿Señor Muñoz? ¡Ça va! Øresund, Århus, Ægir, æble"
    assert to_gsm7(kept) == kept.replace("î", "i")
    assert to_gsm7("ÄÖÜäöüß") == "ÄÖÜäöüß"
    assert to_gsm7("Ç") == "Ç"


def test_to_gsm7_replaces_what_forces_ucs2_needlessly() -> None:
    text = "Fenêtre “quoted” ‘single’ – dash — long… 14:00\u202fPM, 10\u00a0kg. Besançon, Málaga, Ísafjörður, Ôtez, Ûber, Noël, naïve, Œuvre"
    converted = to_gsm7(text)
    assert converted == (
        "Fenetre \"quoted\" 'single' - dash - long... 14:00 PM, 10 kg. Besancon, Malaga, Isafjördur, Otez, Uber,"
        " Noel, naive, OEuvre"
    )
    assert is_gsm7(converted)
    assert segments(converted).encoding == "GSM-7"


def test_to_gsm7_keeps_what_has_no_gsm7_equivalent_so_the_text_is_honestly_ucs2() -> None:
    for text in ("行李在法兰克福", "Ваш багаж найден", "Found it 👍"):
        assert to_gsm7(text) == text
        assert segments(to_gsm7(text)).encoding == "UCS-2"


def test_to_gsm7_can_drop_emoji_but_never_letters() -> None:
    text = "Found it 👍🏽! Flag 🇩🇪, family 👨‍👩‍👧, keycap 1️⃣ © 行李 Ваш"
    assert to_gsm7(text, drop_emoji=True) == "Found it ! Flag , family , keycap 1 © 行李 Ваш"
    assert to_gsm7("Found it 👍", drop_emoji=True) == "Found it "


def test_to_gsm7_leaves_a_status_link_alone() -> None:
    url = "https://baton.example.com/s/aZ09-_.~{x}?a=1&b=%20#frag"
    assert to_gsm7(url) == url


# ---------------------------------------------------------------- fitting


def test_fit_keeps_a_short_message_whole() -> None:
    text = fit("Baton BAG-7KQ3X9T: Found.", "Your bag is in Frankfurt.", f"Details: {LINK}")
    assert text == f'Baton BAG-7KQ3X9T: Found. "Your bag is in Frankfurt." Details: {LINK}'


def test_fit_cuts_only_the_message_at_a_word_and_keeps_head_and_link() -> None:
    head = [
        "Baton BAG-7KQ3X9T: News about your bag: Located.",
        "Held by Lufthansa.",
        "Next update due on Tue at 14:00.",
    ]
    message = "Your bag was found in Frankfurt and will travel on the evening flight. " * 40
    text = fit(head, message, f"Details: {LINK}")

    assert segments(text).count == 2
    assert text.startswith(" ".join(head) + ' "Your bag was found in Frankfurt')
    assert text.endswith(f'..." Details: {LINK}')
    quoted = text[text.index('"') + 1 : text.rindex('..."')]
    assert message.startswith(quoted)
    assert message[len(quoted)] == " "  # cut between words, not inside one
    # Nothing left unused that a longer cut could have taken: one more word would not fit.
    longer = message[: message.index(" ", len(quoted) + 1)]
    assert segments(text.replace(quoted, longer)).count > 2


def test_fit_collapses_whitespace_in_the_message() -> None:
    text = fit("Head.", "Line one.\n\n  Line two.\t", LINK)
    assert text == f'Head. "Line one. Line two." {LINK}'


def test_fit_leaves_out_a_message_of_which_too_little_would_be_left() -> None:
    head = "H" * 230  # leaves room for 9 characters of the message
    text = fit(head, "Ten words that the partner wrote about the bag today. " * 5, LINK)
    assert text == f"{head} {LINK}"


def test_fit_keeps_optional_head_parts_that_fit_and_leaves_out_those_that_do_not() -> None:
    lead = "Baton BAG-7KQ3X9T: " + "x" * 180
    too_long, short = "Held by " + "y" * 120 + ".", "Next update due on Tue at 14:00."
    text = fit([lead, too_long, short], "A message that will not fit at all in what is left.", f"Details: {LINK}")
    assert text == f"{lead} {short} Details: {LINK}"


def test_fit_cuts_the_required_head_last_and_the_link_survives() -> None:
    lead = "Baton BAG-7KQ3X9T: " + "word " * 200
    text = fit([lead, "Held by Lufthansa."], "message", f"Details: {LINK}")
    assert segments(text).count <= 2
    assert text.startswith("Baton BAG-7KQ3X9T: word word")
    assert text.endswith(f"word... Details: {LINK}")
    assert "Held by" not in text and "message" not in text


def test_fit_counts_a_ucs2_message_against_the_ucs2_budget() -> None:
    head, tail = "Baton BAG-7KQ3X9T: 已找到。", f"Details: {LINK}"
    text = fit(head, "您的行李已在法兰克福找到，今晚将随航班送达。" * 50, tail)
    assert segments(text) == Segments("UCS-2", segments(text).units, 2)
    assert text.startswith(head + ' "您的行李') and text.endswith(tail)


def test_fit_never_cuts_the_link_even_when_nothing_else_fits() -> None:
    huge_link = "https://baton.example.com/s/" + "q" * 400
    assert fit("Head", "message", huge_link) == huge_link
