"""SMS text: GSM 03.38 encoding, segment counting as carriers and Twilio do it, and fitting a
message into a segment budget.

An SMS is GSM-7 when every character is in the GSM 03.38 basic table or its extension table
(an extension character costs two septets: the escape plus the character); otherwise the whole
message goes out as UCS-2, counted in UTF-16 code units. A single message holds 160 septets or
70 units; a concatenated one holds 153 septets or 67 units per part (the rest is the UDH), and
neither an escape sequence nor a surrogate pair is ever split across two parts. One character
that is not GSM-7, such as a typographic apostrophe, halves the room of the whole message, so
``to_gsm7`` replaces those that have a GSM-7 look-alike before anything is counted.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# GSM 03.38 basic character set in table order, without 0x1B (the escape to the extension table).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
# The extension table: each of these is sent as ESC + character, two septets.
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67
ELLIPSIS = "..."
# A cut partner message shorter than this says too little to be worth its quotes.
MIN_QUOTE = 12
# A cut falls back to the previous word boundary when one is at most this far back.
WORD_BACKTRACK = 16

# Look-alikes that Unicode decomposition does not give (or gives as something that is not GSM-7).
_REPLACEMENTS = {
    **dict.fromkeys("‘’‚‛′´`‹›", "'"),
    **dict.fromkeys("“”„‟″«»", '"'),
    **dict.fromkeys("‐‑‒–—―−⁃", "-"),
    "…": ELLIPSIS,
    "•": "*",
    "×": "x",
    "\t": " ",
    "\u2028": "\n",
    "\u2029": "\n",
    # Invisible characters that would force UCS-2 for nothing.
    "\u00ad": "",
    "\u200b": "",
    "\u2060": "",
    "\ufeff": "",
    # Letters without a canonical decomposition to a GSM-7 letter.
    "Œ": "OE",
    "œ": "oe",
    "ı": "i",
    "İ": "I",
    "Ł": "L",
    "ł": "l",
    "Đ": "D",
    "đ": "d",
    "Ð": "D",
    "ð": "d",
    "Þ": "Th",
    "þ": "th",
    "ŀ": "l",
}


@dataclass(frozen=True, slots=True)
class Segments:
    encoding: str  # "GSM-7" | "UCS-2"
    units: int  # septets for GSM-7, UTF-16 code units for UCS-2
    count: int  # message parts the carrier bills and delivers


def is_gsm7(text: str) -> bool:
    """Whether the text can be sent in GSM-7 (basic table plus extension table)."""
    return all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text)


def segments(text: str) -> Segments:
    """Encoding, size and number of parts of the text as an SMS (an empty text is one part)."""
    if is_gsm7(text):
        costs = [2 if c in GSM7_EXTENSION else 1 for c in text]
        return Segments("GSM-7", sum(costs), _parts(costs, GSM7_SINGLE, GSM7_PART))
    costs = [2 if ord(c) > 0xFFFF else 1 for c in text]  # astral characters are surrogate pairs
    return Segments("UCS-2", sum(costs), _parts(costs, UCS2_SINGLE, UCS2_PART))


def _parts(costs: list[int], single: int, part: int) -> int:
    if sum(costs) <= single:
        return 1
    # Greedy packing in order: a two-unit character that does not fit moves whole to the next part.
    count, used = 1, 0
    for cost in costs:
        if used + cost > part:
            count, used = count + 1, 0
        used += cost
    return count


def to_gsm7(text: str, *, drop_emoji: bool = False) -> str:
    """Replace characters that force UCS-2 needlessly by their nearest GSM-7 equivalent.

    Typographic quotes, dashes, the ellipsis, unusual spaces and accented letters that GSM-7
    lacks (ê, á, ç, ő, ...) are replaced; letters GSM-7 has (ä ö ü ß é è à ñ Ç Ø Å ...) are kept.
    A character without a GSM-7 equivalent (Chinese, Cyrillic, emoji) is kept as it is: the
    message is then honestly UCS-2. With ``drop_emoji``, pictographs and their joiners, skin
    tones and variation selectors are removed instead (for a partner's text, where a thumbs-up
    would otherwise cost the whole quote its room); letters of any script are always kept.
    """
    if drop_emoji:
        text = "".join(c for c in text if not _is_emoji(c))
    return "".join(_gsm7_char(c) for c in text)


def _is_emoji(c: str) -> bool:
    code = ord(c)
    return (
        (unicodedata.category(c) == "So" and code >= 0x2190)  # arrows, dingbats, pictographs; not © ® °
        or 0x1F3FB <= code <= 0x1F3FF  # skin tones
        or 0xE0020 <= code <= 0xE007F  # tag sequences (flags of regions)
        or c in "\u200d\ufe0e\ufe0f\u20e3"  # joiner, variation selectors, keycap
    )


def _gsm7_char(c: str) -> str:
    if c in GSM7_BASIC or c in GSM7_EXTENSION:
        return c
    if c in _REPLACEMENTS:
        return _REPLACEMENTS[c]
    if unicodedata.category(c) == "Zs":  # no-break, thin, narrow, ideographic... spaces
        return " "
    # Compatibility decomposition without the combining marks: ê -> e, ç -> c, ﬁ -> fi, ™ -> TM.
    base = "".join(d for d in unicodedata.normalize("NFKD", c) if not unicodedata.combining(d))
    if base and is_gsm7(base):
        return base
    return c


def _squash(text: str) -> str:
    return " ".join(text.split())


def fit(head: str | Sequence[str], message: str | None, tail: str, *, max_segments: int = 2) -> str:
    """``head "message" tail`` within ``max_segments``, giving up the partner's message first.

    ``head`` is one string or a sequence of parts: the first part is required, the others are
    optional, most important first. Parts, the quoted message and the tail are joined with
    single spaces; whitespace inside each is collapsed to single spaces (a newline costs as much
    as a letter and reads badly in a short text).

    1. The head: the required part, then each optional part in order if it still fits with the
       tail; one that does not fit is left out and the next one is tried (a long holder name
       does not push out the shorter next-update line after it).
    2. When the required part and the tail alone are too long, the required part is cut at a
       word boundary and marked ``...``; there is no room for the message then.
    3. The message, whitespace collapsed, goes whole between head and tail if it fits; otherwise
       it is cut to the longest prefix that fits, back to a word boundary when one is near, and
       marked ``..."``; when fewer than ``MIN_QUOTE`` characters of it would be left, it is left
       out.

    The tail (the status link) is never cut. A tail too long for the budget on its own (a
    configuration error: status links are short) is returned alone, over budget, because a
    message without its link is useless.
    """
    required, *optional = [head] if isinstance(head, str) else list(head)
    parts = [p for p in (_squash(required), *(_squash(o) for o in optional)) if p]
    tail = _squash(tail)
    quote = _squash(message or "")

    def fits(text: str) -> bool:
        return segments(text).count <= max_segments

    def join(*pieces: str) -> str:
        return " ".join(p for p in pieces if p)

    if not fits(tail):
        return tail
    if not parts or not fits(join(parts[0], tail)):
        lead = parts[0] if parts else ""
        keep = _longest(lambda n: fits(join(lead[:n] + ELLIPSIS, tail)), len(lead))
        cut = _cut(lead, keep)
        return join(cut + ELLIPSIS, tail) if cut else tail
    kept = parts[:1]
    for part in parts[1:]:
        if fits(join(*kept, part, tail)):
            kept.append(part)

    head_text = join(*kept)
    if not quote:
        return join(head_text, tail)
    whole = join(head_text, f'"{quote}"', tail)
    if fits(whole):
        return whole
    # Search on raw prefixes (their size only grows with n), then cut back to a word boundary:
    # a shorter text never needs more parts, so the cut version fits too.
    keep = _longest(lambda n: fits(join(head_text, f'"{quote[:n]}{ELLIPSIS}"', tail)), len(quote))
    cut = _cut(quote, keep)
    if len(cut) < MIN_QUOTE:
        return join(head_text, tail)
    return join(head_text, f'"{cut}{ELLIPSIS}"', tail)


def _longest(fits_prefix: Callable[[int], bool], limit: int) -> int:
    """The largest n in [0, limit) with fits_prefix(n), or 0; fits_prefix is monotone in n."""
    lo, hi = 0, limit - 1
    if hi < 0 or not fits_prefix(0):
        return 0
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits_prefix(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _cut(text: str, n: int) -> str:
    """The first n characters, back to the last word boundary when it is near, without trailing
    spaces, punctuation or a dangling joiner."""
    prefix = text[:n]
    if n < len(text) and not text[n].isspace():
        space = prefix.rfind(" ")
        if space > 0 and n - space <= WORD_BACKTRACK:
            prefix = prefix[:space]
    return prefix.rstrip(" ,;:-\u200d\ufe0f")
