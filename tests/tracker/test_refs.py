import itertools
import random
import re
from string import ascii_uppercase

import pytest

from tracker.refs import (
    ALPHABET,
    ParsedRef,
    find_refs_in_text,
    new_ref,
    normalize_ref,
    parse_ref,
    prefixes_are_distinguishable,
)

VALID = "BAG-7KQ3X9T"  # "7KQ3X9" with its check symbol
TYPO = "BAG-7KQ3X8T"


class Scripted:
    """An rng whose choices are given in advance, to build references with a chosen body."""

    def __init__(self, symbols):
        self._symbols = iter(symbols)

    def choice(self, seq):
        symbol = next(self._symbols)
        assert symbol in seq
        return symbol


def ref_with(prefix, data):
    return new_ref(prefix, rng=Scripted(data))


def is_valid(ref):
    parsed = parse_ref(ref)
    assert parsed is not None, ref
    return parsed.valid


def single_substitutions(ref):
    prefix, body = ref.split("-")
    for i, letter in enumerate(prefix):
        for other in ascii_uppercase.replace(letter, ""):
            yield f"{prefix[:i]}{other}{prefix[i + 1 :]}-{body}"
    for i, symbol in enumerate(body):
        for other in ALPHABET.replace(symbol, ""):
            yield f"{prefix}-{body[:i]}{other}{body[i + 1 :]}"


def swapped(text, i, j):
    chars = list(text)
    chars[i], chars[j] = chars[j], chars[i]
    return "".join(chars)


def adjacent_transpositions(ref):
    prefix, body = ref.split("-")
    for i in range(len(prefix) - 1):
        if prefix[i] != prefix[i + 1]:
            yield f"{swapped(prefix, i, i + 1)}-{body}"
    for i in range(len(body) - 1):
        if body[i] != body[i + 1]:
            yield f"{prefix}-{swapped(body, i, i + 1)}"


def random_prefix(rng):
    return "".join(rng.choices(ascii_uppercase, k=rng.randint(2, 5)))


# --- new_ref -----------------------------------------------------------------------------


def test_alphabet_is_crockford_base32_without_i_l_o_u():
    assert len(ALPHABET) == len(set(ALPHABET)) == 32
    assert set(ALPHABET) == set("0123456789" + ascii_uppercase) - set("ILOU")


def test_new_ref_is_the_prefix_a_dash_six_random_symbols_and_a_check_symbol():
    ref = new_ref("BAG")
    assert re.fullmatch(r"BAG-[0-9A-HJKMNP-TV-Z]{7}", ref), ref


def test_new_refs_are_valid():
    rng = random.Random(1)
    for _ in range(1000):
        prefix = random_prefix(rng)
        ref = new_ref(prefix, rng=rng)
        assert parse_ref(ref) == ParsedRef(ref=ref, prefix=prefix, valid=True, text=ref)


def test_new_ref_draws_its_random_symbols_from_the_given_rng():
    assert ref_with("BAG", "7KQ3X9") == VALID
    assert new_ref("PCL", rng=random.Random(5)) == new_ref("PCL", rng=random.Random(5))
    assert new_ref("PCL", rng=random.Random(5)) != new_ref("PCL", rng=random.Random(6))


def test_new_ref_accepts_a_lowercase_prefix():
    assert new_ref("bag", rng=Scripted("7KQ3X9")) == VALID


@pytest.mark.parametrize("prefix", ["", "B", "BAGGIE", "B4G", "BÄG", "BA-G", "BA G"])
def test_new_ref_rejects_a_prefix_that_is_not_two_to_five_letters(prefix):
    with pytest.raises(ValueError, match="2 to 5 letters"):
        new_ref(prefix)


# --- the check symbol --------------------------------------------------------------------


def test_every_single_symbol_substitution_in_the_body_is_detected_for_every_pair_of_symbols():
    # Bases that put every symbol at every body position, the check position included.
    bases = {
        ref_with("BAG", "7KQ3X9"[:position] + symbol + "7KQ3X9"[position + 1 :])
        for position in range(6)
        for symbol in ALPHABET
    }
    covered = {(position, body[position]) for body in (b[4:] for b in bases) for position in range(7)}
    assert covered == {(position, symbol) for position in range(7) for symbol in ALPHABET}

    for base in bases:
        for typo in single_substitutions(base):
            assert not is_valid(typo), f"{typo} mistaken for {base}"


def test_every_adjacent_transposition_in_the_body_is_detected_for_every_pair_of_symbols():
    checked = set()
    for position in range(5):
        for x, y in itertools.permutations(ALPHABET, 2):
            data = list("7KQ3X9")
            data[position], data[position + 1] = x, y
            base = ref_with("BAG", "".join(data))
            typo = f"BAG-{swapped(base[4:], position, position + 1)}"
            assert not is_valid(typo), f"{typo} mistaken for {base}"
            checked.add((position, x, y))
    # The last random symbol and the check symbol: vary the first symbol to reach every check.
    for x, first in itertools.product(ALPHABET, ALPHABET):
        base = ref_with("BAG", first + "KQ3X" + x)
        body = base[4:]
        if body[5] != body[6]:
            assert not is_valid(f"BAG-{swapped(body, 5, 6)}"), base
            checked.add((5, body[5], body[6]))
    assert len(checked) == 6 * 32 * 31


def test_every_single_letter_substitution_and_adjacent_swap_in_the_prefix_is_detected():
    for position, letter in itertools.product(range(3), ascii_uppercase):
        prefix = "BAG"[:position] + letter + "BAG"[position + 1 :]
        base = ref_with(prefix, "7KQ3X9")
        for typo in itertools.chain(single_substitutions(base), adjacent_transpositions(base)):
            assert not is_valid(typo), f"{typo} mistaken for {base}"
    for x, y in itertools.permutations(ascii_uppercase, 2):
        base = ref_with(x + y + "G", "7KQ3X9")
        assert not is_valid(f"{y}{x}G-{base[4:]}"), base


def test_a_prefix_letter_dropped_or_added_in_front_is_detected():
    rng = random.Random(8)
    for _ in range(200):
        base = new_ref("BAG", rng=rng)
        assert not is_valid(base[1:])
        for letter in ascii_uppercase:
            assert not is_valid(letter + base), letter + base


def test_substitutions_and_adjacent_transpositions_are_detected_in_random_references():
    rng = random.Random(2024)
    for _ in range(300):
        base = new_ref(random_prefix(rng), rng=rng)
        for typo in itertools.chain(single_substitutions(base), adjacent_transpositions(base)):
            assert not is_valid(typo), f"{typo} mistaken for {base}"


def test_jump_transpositions_and_twin_errors_are_detected():
    rng = random.Random(99)
    for _ in range(2000):
        base = new_ref("BAG", rng=rng)
        body = base[4:]
        i = rng.randrange(5)
        if body[i] != body[i + 2]:
            assert not is_valid(f"BAG-{swapped(body, i, i + 2)}"), base
        j = rng.randrange(6)
        if body[j] == body[j + 1]:
            other = rng.choice(ALPHABET.replace(body[j], ""))
            assert not is_valid(f"BAG-{body[:j]}{other * 2}{body[j + 2 :]}"), base


def test_a_baggage_reference_retyped_with_the_parcel_prefix_fails_its_check():
    assert prefixes_are_distinguishable("BAG", "PCL")
    rng = random.Random(3)
    for _ in range(500):
        ref = new_ref("BAG", rng=rng)
        assert not is_valid("PCL" + ref[3:])
        assert not is_valid(ref.replace("BAG-", "PC-"))


def test_prefixes_are_distinguishable_tells_whether_a_prefix_mixup_is_caught():
    rng = random.Random(11)
    prefixes = sorted({random_prefix(rng) for _ in range(80)})
    outcomes = set()
    for a, b in itertools.combinations(prefixes, 2):
        ref = new_ref(a, rng=rng)
        mixup = f"{b}-{ref.split('-')[1]}"
        distinguishable = prefixes_are_distinguishable(a, b)
        assert is_valid(mixup) is not distinguishable, (a, b)
        outcomes.add(distinguishable)
    assert outcomes == {True, False}


def test_a_prefix_is_not_distinguishable_from_itself_in_any_case():
    assert not prefixes_are_distinguishable("bag", "BAG")


# --- normalize_ref -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("BAG-7KQ3X9T", "BAG-7KQ3X9T"),
        ("bag-7kq3x9t", "BAG-7KQ3X9T"),
        ("BAG7KQ3X9T", "BAG-7KQ3X9T"),
        ("  bag 7kq3x9t\n", "BAG-7KQ3X9T"),
        ("BAG - 7KQ3X9T", "BAG-7KQ3X9T"),
        ("BAG\u20137KQ3X9T", "BAG-7KQ3X9T"),  # an en dash from a phone's autocorrect
        ("\uff22\uff21\uff27\uff0d\uff17\uff2b\uff31\uff13\uff38\uff19\uff34", "BAG-7KQ3X9T"),
        ("pcl-oiLlOo0", "PCL-0111000"),  # look-alikes in the body only: PCL keeps its L
    ],
)
def test_normalize_ref_reads_references_the_way_people_type_them(text, expected):
    assert normalize_ref(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        "where is my bag",  # a prefix and a body can be found in it only by gluing words
        "BAG-7KQ3X9",
        "BAG-7KQ3X9TT",
        "B-7KQ3X9T",
        "BAGGIE-7KQ3X9T",
        "0016123456",
        "BAG-7KQ3X9!",
    ],
)
def test_normalize_ref_rejects_text_that_is_not_reference_shaped(text):
    with pytest.raises(ValueError, match="not a case reference"):
        normalize_ref(text)


# --- parse_ref ---------------------------------------------------------------------------


def test_parse_ref_returns_a_valid_reference_normalized():
    assert parse_ref("bag 7kq3x9t") == ParsedRef(ref=VALID, prefix="BAG", valid=True, text="bag 7kq3x9t")


def test_parse_ref_marks_a_reference_whose_check_fails_as_a_probable_typo():
    assert parse_ref("bag-7kq3x8t") == ParsedRef(ref=TYPO, prefix="BAG", valid=False, text="bag-7kq3x8t")


def test_parse_ref_marks_a_body_with_the_never_issued_letter_u_as_a_probable_typo():
    parsed = parse_ref("BAG-7KQ3XUT")
    assert parsed is not None and parsed.ref == "BAG-7KQ3XUT" and not parsed.valid


@pytest.mark.parametrize("text", ["", "where is my bag", "0016123456", "BAG-7KQ3X9TT", "BAG-"])
def test_parse_ref_returns_none_for_text_that_is_not_a_reference(text):
    assert parse_ref(text) is None


def test_parse_ref_with_known_prefixes_treats_an_unknown_prefix_as_not_a_reference():
    assert parse_ref("JFKLH12345") is not None  # reference-shaped: JFK-1H12345
    assert parse_ref("JFKLH12345", prefixes={"BAG", "PCL"}) is None
    assert parse_ref(VALID, prefixes={"bag", "pcl"}) == parse_ref(VALID)
    assert parse_ref(VALID, prefixes={"bag", "pcl"}).valid


def test_parsed_ref_reads_as_its_normalized_reference():
    assert str(parse_ref("bag7kq3x9t")) == VALID


# --- find_refs_in_text -------------------------------------------------------------------


def test_find_refs_in_text_pulls_a_reference_out_of_an_sms():
    assert find_refs_in_text("status of bag-7kq3x9t please") == [
        ParsedRef(ref=VALID, prefix="BAG", valid=True, text="bag-7kq3x9t")
    ]


def test_find_refs_in_text_returns_references_in_order_without_repeats():
    other = ref_with("PCL", "ABCDEF")
    text = f"({other}) and {VALID.lower()}, again {VALID}."
    assert [parsed.ref for parsed in find_refs_in_text(text)] == [other, VALID]


def test_find_refs_in_text_reports_a_dashed_reference_with_a_failing_check_as_a_typo():
    [parsed] = find_refs_in_text(f"my case is {TYPO.lower()}")
    assert parsed.ref == TYPO and not parsed.valid


def test_find_refs_in_text_reads_a_reference_typed_without_its_dash():
    [parsed] = find_refs_in_text("bag7kq3x9t?")
    assert parsed.ref == VALID and parsed.valid


def test_find_refs_in_text_takes_long_words_for_words_not_typos():
    text = "Hi, is my suitcase in Frankfurt? I called yesterday, something is wrong"
    assert find_refs_in_text(text) == []


def test_find_refs_in_text_reports_an_undashed_typo_when_its_prefix_is_known():
    assert find_refs_in_text("bag7kq3x8t") == []
    [parsed] = find_refs_in_text("bag7kq3x8t", prefixes={"BAG"})
    assert parsed.ref == TYPO and not parsed.valid


def test_find_refs_in_text_with_known_prefixes_ignores_worldtracer_refs_and_bag_tags():
    text = f"File JFKLH12345, tag 0016123456, re-arrange delivery for {VALID}"
    assert [parsed.ref for parsed in find_refs_in_text(text, prefixes={"BAG", "PCL"})] == [VALID]


def test_find_refs_in_text_ignores_a_reference_glued_to_other_letters():
    assert find_refs_in_text(f"xyzabc{VALID}") == []
    assert find_refs_in_text(f"{VALID}9") == []
