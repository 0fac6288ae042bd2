"""Case references: short, case-insensitive identifiers that catch typos, such as ``BAG-7KQ3X9T``.

A reference is the case type's prefix (2 to 5 letters), a dash, six random symbols and one
check symbol. The symbols come from Crockford's base32 alphabet without I, L, O and U, so a
reference can be read aloud, written by hand or typed into an SMS: lowercase is accepted, and
the look-alikes O, I and L are read as 0, 1 and 1. Six random symbols give 2**30 (about a
billion) references per prefix. This module does not guarantee uniqueness: the database's
unique constraint does, and the caller draws again on a clash.

The check symbol
----------------
Each symbol stands for an element of the field GF(32), built with the primitive polynomial
x^5 + x^2 + 1; alpha = x is a primitive element (its order is 31). A body symbol stands for its
index in ``ALPHABET``. A prefix letter A..Z stands for 1..26: never 0, so adding or dropping a
leading prefix letter also changes the sum. A reference whose symbols, prefix first, are
s_1 .. s_n (s_n is the check symbol) is valid when

    s_1 * alpha^(n-1) + s_2 * alpha^(n-2) + ... + s_(n-1) * alpha + s_n = 0      in GF(32).

Computed by Horner's rule (``state = alpha * state + s``), this is Damm's algorithm over the
quasigroup x o y = alpha*x + y, which is totally anti-symmetric because alpha != 1. Unlike Luhn
mod 32, the check provably catches every error we care about, because a field has no zero
divisors:

1. One wrong symbol: changing s_i by e != 0 changes the sum by e * alpha^k != 0.
2. Two adjacent symbols swapped (x != y): the sum changes by
   (x + y) * alpha^k * (alpha + 1) != 0, because alpha != 1.
3. Also caught: jump transpositions (xzy -> yzx, since alpha^2 != 1) and twin errors
   (xx -> yy).

The prefix is part of the sum, so a wrong prefix letter is caught by (1). A wholesale
mix-up of two prefixes (``BAG-`` typed for a ``PCL-`` case) changes the sum by an amount that
depends only on the two prefixes: for a given pair it is either always caught or never caught.
``prefixes_are_distinguishable`` says which, so a new case type's prefix can be checked
against the existing ones when it is configured.

Reading references from people
------------------------------
``parse_ref`` tells three outcomes apart: a valid reference, a reference-shaped string whose
check fails (a probable typo, worth telling the sender about), and anything else (``None``).
``find_refs_in_text`` pulls references out of free text such as an SMS. Passing the known
prefixes to either makes tokens with an unknown prefix (a WorldTracer reference like
``JFKLH12345``, an ordinary long word) count as not a reference at all.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "ALPHABET",
    "ParsedRef",
    "find_refs_in_text",
    "new_ref",
    "normalize_ref",
    "parse_ref",
    "prefixes_are_distinguishable",
]

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
RANDOM_LENGTH = 6
BODY_LENGTH = RANDOM_LENGTH + 1  # random symbols and the check symbol

_VALUE = {symbol: index for index, symbol in enumerate(ALPHABET)}
_LOOK_ALIKES = str.maketrans({"O": "0", "I": "1", "L": "1"})
# Phones turn "-" into these when they "autocorrect".
_DASHES = "-\u2010\u2011\u2012\u2013\u2014\u2212"
_SEPARATORS = re.compile(rf"[{_DASHES}\s]+")
_PREFIX = re.compile(r"[A-Z]{2,5}")
_BODY = re.compile(rf"[0-9A-Z]{{{BODY_LENGTH}}}")
_TOKEN = re.compile(
    rf"(?<![0-9A-Za-z])[A-Za-z]{{2,5}}(?P<dash>[{_DASHES}]?)[0-9A-Za-z]{{{BODY_LENGTH}}}"
    r"(?![0-9A-Za-z])"
)
_FIELD_MODULUS = 0b100101  # x^5 + x^2 + 1


class _Chooser(Protocol):
    def choice(self, seq: Sequence[str], /) -> str: ...


@dataclass(frozen=True, slots=True)
class ParsedRef:
    """A reference-shaped string, normalized; ``valid`` is False when its check fails."""

    ref: str
    prefix: str
    valid: bool
    text: str

    def __str__(self) -> str:
        return self.ref


def new_ref(prefix: str, *, rng: _Chooser = secrets) -> str:
    """Draw a new reference for the case type with this prefix, e.g. ``BAG-7KQ3X9T``."""
    prefix = _checked_prefix(prefix)
    data = "".join(rng.choice(ALPHABET) for _ in range(RANDOM_LENGTH))
    return f"{prefix}-{data}{_check_symbol(prefix, data)}"


def normalize_ref(text: str) -> str:
    """Return the canonical ``PREFIX-BODY`` form; raise ValueError if not reference-shaped.

    Accepts lowercase, surrounding spaces, a space or a missing dash between prefix and body,
    and O/I/L for 0/1/1 in the body. It does not look at the check symbol: ``parse_ref`` does.
    """
    words = _SEPARATORS.split(unicodedata.normalize("NFKC", text).strip().upper())
    if len(words) == 1:
        prefix, body = words[0][:-BODY_LENGTH], words[0][-BODY_LENGTH:]
    elif len(words) == 2:  # "where is my bag" must not become WHERE-1SMYBAG
        prefix, body = words
    else:
        raise ValueError(f"not a case reference: {text!r}")
    # Only the body: prefixes are letters, and "PCL" must stay "PCL".
    body = body.translate(_LOOK_ALIKES)
    if not (_PREFIX.fullmatch(prefix) and _BODY.fullmatch(body)):
        raise ValueError(f"not a case reference: {text!r}")
    return f"{prefix}-{body}"


def parse_ref(text: str, *, prefixes: Collection[str] | None = None) -> ParsedRef | None:
    """Read a reference typed by a person: valid, a probable typo (``valid=False``), or None."""
    try:
        ref = normalize_ref(text)
    except ValueError:
        return None
    prefix, body = ref.split("-")
    if prefixes is not None and prefix not in {p.upper() for p in prefixes}:
        return None
    return ParsedRef(ref=ref, prefix=prefix, valid=_is_valid(prefix, body), text=text)


def find_refs_in_text(text: str, *, prefixes: Collection[str] | None = None) -> list[ParsedRef]:
    """Pull the references out of free text, in order of appearance, without repeats.

    A token written without a dash (``bag7kq3x9m``) whose check fails is taken for an
    ordinary word ("yesterday" is reference-shaped) unless its prefix is one of ``prefixes``.
    """
    found: dict[str, ParsedRef] = {}
    for match in _TOKEN.finditer(unicodedata.normalize("NFKC", text)):
        parsed = parse_ref(match.group(), prefixes=prefixes)
        if parsed is None or parsed.ref in found:
            continue
        if not parsed.valid and not match.group("dash") and prefixes is None:
            continue
        found[parsed.ref] = parsed
    return list(found.values())


def prefixes_are_distinguishable(a: str, b: str) -> bool:
    """Whether a reference with prefix ``a`` always fails its check when retyped with ``b``.

    The sum changes by alpha^7 * (P(a) + P(b)), P being the prefix's own Horner sum, so the
    mix-up is caught for every body exactly when P(a) != P(b).
    """
    a, b = _checked_prefix(a), _checked_prefix(b)
    return a != b and _prefix_state(a) != _prefix_state(b)


def _checked_prefix(prefix: str) -> str:
    upper = prefix.upper()
    if not (upper.isascii() and _PREFIX.fullmatch(upper)):
        raise ValueError(f"a reference prefix is 2 to 5 letters A-Z, not {prefix!r}")
    return upper


def _times_alpha(x: int) -> int:
    x <<= 1
    return x ^ _FIELD_MODULUS if x & 0b100000 else x


def _fold(state: int, values: list[int]) -> int:
    for value in values:
        state = _times_alpha(state) ^ value
    return state


def _prefix_state(prefix: str) -> int:
    return _fold(0, [ord(letter) - ord("A") + 1 for letter in prefix])


def _check_symbol(prefix: str, data: str) -> str:
    # The check c must bring the state to 0: alpha*state + c = 0, and -1 = 1 in GF(2^5).
    state = _fold(_prefix_state(prefix), [_VALUE[symbol] for symbol in data])
    return ALPHABET[_times_alpha(state)]


def _is_valid(prefix: str, body: str) -> bool:
    if any(symbol not in _VALUE for symbol in body):  # a U: never issued
        return False
    return _fold(_prefix_state(prefix), [_VALUE[symbol] for symbol in body]) == 0
