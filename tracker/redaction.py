"""Finding one customer's personal data in free text, however it is spelled, and replacing it.

Partners write what they like ("Spoke to Jose Mueller on (512) 555-0115" about José Müller,
+15125550115), so literal search is not enough:

1. Text is folded before matching: NFKD, combining marks dropped, a few letters NFKD leaves
   alone transliterated (ø, æ, ł, ...), case-folded. Every folded character remembers the
   original character it came from, so a match is replaced in the original text.
2. Each name token also matches its German transliteration (ü → ue, ß → ss); the full name
   matches in either order ("Mueller, Jose") as one span, then each token on its own, skipping
   particles and one-letter tokens (``de``, ``van``, initials) that would erase ordinary words.
3. A phone number is found by its digits, whatever the separators: any run of digit groups joined
   by spaces, dashes, dots, slashes or parentheses whose digits are the E.164 number, its national
   significant number (``phonenumbers`` splits it from the country code), or those with a trunk
   or international prefix ("0", "00", "011"). Digit groups are tried in every contiguous span, so
   a number beside another ("+1 512 555 0115 0016123456") is still found. (PhoneNumberMatcher
   finds a subset of these: it misses "001-512-555-0115", dialled from Europe.)
4. The email address and the customer's own texts match literally (folded).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

import phonenumbers

ERASED_TEXT = "[erased]"
_LETTERS = {"ø": "o", "æ": "ae", "œ": "oe", "ł": "l", "đ": "d", "ð": "d", "þ": "th", "ı": "i", "ŀ": "l"}
_GERMAN = {"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "ø": "oe", "å": "aa"}
_PARTICLES = {"al", "bin", "da", "de", "del", "della", "der", "di", "do", "dos", "du", "el", "la", "le", "van",
              "von", "ter", "ten", "den", "mc", "y", "e"}
_DIGIT_RUN = re.compile(r"\d+(?:[ \t\-./()\u00a0]{1,3}\d+)*")
_PREFIXES = ("", "0", "00", "011", "+")


def fold_char(char: str) -> str:
    char = char.lower()
    char = _LETTERS.get(char, char)
    decomposed = unicodedata.normalize("NFKD", char)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def fold(text: str) -> tuple[str, list[int]]:
    """The folded text, and for each of its characters the index of the original it came from."""
    out: list[str] = []
    origin: list[int] = []
    for index, char in enumerate(text):
        for folded in fold_char(char):
            out.append(folded)
            origin.append(index)
    return "".join(out), origin


def _german(token: str) -> str:
    return "".join(_GERMAN.get(c, c) for c in token.lower())


@dataclass
class Redactor:
    """Everything that identifies one customer, compiled once; ``text()`` and ``value()`` erase it."""

    name: str | None = None
    phone: str | None = None
    email: str | None = None
    own_words: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        literals = [fold(x)[0] for x in [self.email or "", *self.own_words] if x and len(x.strip()) >= 3]
        patterns = [re.escape(x.strip()) for x in sorted(set(literals), key=len, reverse=True) if x.strip()]
        tokens = [t for t in re.split(r"[\s,.;:'\"()/-]+", self.name or "") if t]
        variants = [sorted({fold(t)[0], fold(_german(t))[0]}, key=len, reverse=True) for t in tokens]
        alternatives = ["(?:" + "|".join(re.escape(v) for v in group) + ")" for group in variants]
        if len(alternatives) > 1:
            between = r"[\s,.\-]+"
            patterns.append(r"(?<!\w)" + between.join(alternatives) + r"(?!\w)")
            patterns.append(r"(?<!\w)" + between.join(reversed(alternatives)) + r"(?!\w)")
        for token, group in zip(tokens, alternatives, strict=True):
            folded = fold(token)[0]
            if len(folded) >= 2 and folded not in _PARTICLES:
                patterns.append(r"(?<!\w)" + group + r"(?!\w)")
        self._words = re.compile("|".join(patterns)) if patterns else None
        self._number = None
        self._digits: set[str] = set()
        if self.phone:
            try:
                self._number = phonenumbers.parse(self.phone, None)
            except phonenumbers.NumberParseException:
                self._number = None
            plain = re.sub(r"\D", "", self.phone)
            national = str(self._number.national_number) if self._number else plain
            country = str(self._number.country_code) if self._number else ""
            for prefix in _PREFIXES:
                self._digits |= {prefix.strip("+") + national, prefix.strip("+") + country + national}
            self._digits = {d for d in self._digits if len(d) >= 6} | ({plain} if len(plain) >= 6 else set())

    def _phone_spans(self, folded: str) -> list[tuple[int, int]]:
        spans: list[tuple[int, int]] = []
        if not self._digits:
            return spans
        for run in _DIGIT_RUN.finditer(folded):
            groups = list(re.finditer(r"\d+", run.group()))
            for i in range(len(groups)):
                digits = ""
                for j in range(i, len(groups)):
                    digits += groups[j].group()
                    if digits in self._digits:
                        start = run.start() + groups[i].start()
                        while start > 0 and folded[start - 1] in "+(":
                            start -= 1
                        spans.append((start, run.start() + groups[j].end()))
        return spans

    def text(self, value: str | None) -> str | None:
        """``value`` with every mention of the customer replaced by ``[erased]`` (None and "" as they are)."""
        if not value:
            return value
        folded, origin = fold(value)
        spans = self._phone_spans(folded)
        if self._words is not None:
            spans += [(m.start(), m.end()) for m in self._words.finditer(folded) if m.end() > m.start()]
        if not spans:
            return value
        merged: list[list[int]] = []
        for start, end in sorted(spans):
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        out, cursor = [], 0
        for start, end in merged:
            first, last = origin[start], origin[end - 1] + 1
            out += [value[cursor:first], ERASED_TEXT]
            cursor = last
        out.append(value[cursor:])
        return "".join(out)

    def value(self, value: Any) -> Any:
        """A JSON value with every string in it (not the keys) passed through ``text``."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        return value
