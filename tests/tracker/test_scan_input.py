"""Reading bag scans from JSON, CSV and IATA Type B bag messages (``tracker.scan_input``)."""

import datetime as dt
import json

import pytest

from tracker.scan_input import POINTS, LineError, Scan, normalize_flight, parse_scans

UTC = dt.UTC
RECEIVED = dt.datetime(2024, 11, 15, 10, 0, tzinfo=UTC)


def parse(body, content_type, **kwargs):
    if isinstance(body, str):
        body = body.encode()
    return parse_scans(body, content_type, received_at=RECEIVED, **kwargs)


def type_b(text):
    """A Type B body as sent: CR LF line ends."""
    return text.strip("\n").replace("\n", "\r\n").encode() + b"\r\n"


# --- IATA Type B ------------------------------------------------------------------------------------

BPM_TRANSFER_LOADED = """\
BPM
.V/1TFRA
.J/S//ABC123/SCANNER7/15NOV/0932L
.F/LH400/15NOV/JFK/Y
.N/0016123456001
.P/1LOVELACE/ADA
ENDBPM
"""

BSM_CHECKIN = """\
BSM
.V/1LJFK
.F/UA0960/14NOV/FRA/Y
.O/LH1234/15NOV/MUC/Y
.N/0016555000001
.D/CKIN//14NOV/2150L//JFK
.W/K/1/23
.S/Y/23C/C/044//N
.P/2HOPPER/GRACE/MISS
.L/ZX7Y3Q
.J/R/AGENT01/KIOSK4/14NOV/2150L
ENDBSM
"""

NAMES = ("LOVELACE", "ADA", "HOPPER", "GRACE", "BABBAGE", "CHARLES")


def test_a_bpm_for_a_transfer_bag_loaded_on_its_outbound_flight():
    parsed = parse(type_b(BPM_TRANSFER_LOADED), "text/plain")
    assert parsed.errors == []
    # 09:32 local time at Frankfurt in November is 08:32 UTC (CET, +01:00).
    assert parsed.scans == [Scan(line=1, bag_tag="0016123456", at=dt.datetime(2024, 11, 15, 8, 32, tzinfo=UTC),
                                 station="FRA", point="loading", flight="LH400", note=None)]


def test_a_bsm_at_check_in_is_an_acceptance_with_the_outbound_flight():
    parsed = parse(type_b(BSM_CHECKIN), "text/plain")
    assert parsed.errors == []
    [scan] = parsed.scans
    assert (scan.bag_tag, scan.station, scan.point, scan.flight) == ("0016555000", "JFK", "acceptance", "UA960")
    # 21:50 in New York on 14 November is 02:50 UTC the next day (EST, -05:00).
    assert scan.at == dt.datetime(2024, 11, 15, 2, 50, tzinfo=UTC)


def test_several_messages_in_one_body_after_a_type_b_heading():
    body = type_b("""\
\x01QD FRAKLLH FRAXALH
.JFKBSUA 150940
\x02BSM
.V/1XFRA
.I/UA960/14NOV/JFK
.F/LH400/15NOV/JFK
.N/0016777000001
.J/R//SCAN12/15NOV/0815Z
ENDBSM
BPM
.V/1XFRA
.I/UA960/15NOV/JFK
.N/0016777001001
.J/R/AGENT9/BELT3/15NOV/0830Z
ENDBPM
BPM
.V/1TMUC
.I/LH100/15NOV/FRA
.N/0016777002001
.J/S/AGENT2/SCN44/15NOV/0845Z
ENDBPM\x03
""")
    parsed = parse(body, "text/plain")
    assert parsed.errors == []
    assert [(s.line, s.bag_tag, s.point, s.station, s.flight, s.at.strftime("%H:%M")) for s in parsed.scans] == [
        (3, "0016777000", "arrival", "FRA", "UA960", "08:15"),  # an arrival takes the inbound flight
        (10, "0016777001", "arrival", "FRA", "UA960", "08:30"),
        (16, "0016777002", "transfer", "MUC", "LH100", "08:45"),  # no .F/: a transfer, not a loading
    ]


def test_a_tag_count_of_three_is_three_consecutive_tags():
    body = type_b(BPM_TRANSFER_LOADED.replace(".N/0016123456001", ".N/0016123456003\n.N/0016999999001"))
    parsed = parse(body, "text/plain")
    assert parsed.errors == []
    assert [s.bag_tag for s in parsed.scans] == ["0016123456", "0016123457", "0016123458", "0016999999"]
    assert {(s.line, s.point, s.flight) for s in parsed.scans} == {(1, "loading", "LH400")}


def test_tags_running_past_the_serial_numbers_are_an_error():
    body = type_b(BPM_TRANSFER_LOADED.replace(".N/0016123456001", ".N/0016999999002"))
    parsed = parse(body, "text/plain")
    assert parsed.scans == []
    assert parsed.errors == [LineError(1, "the tags of .N/ run past the end of the serial numbers")]


def test_the_passengers_name_is_never_kept():
    good = type_b(BPM_TRANSFER_LOADED + BSM_CHECKIN)
    bad = type_b(BPM_TRANSFER_LOADED.replace(".N/0016123456001", ".N/12345")
                 + BSM_CHECKIN.replace(".P/2HOPPER/GRACE/MISS", ".P/1BABBAGE/CHARLES").replace(".J/", ".X/"))
    for body in (good, bad):
        parsed = parse(body, "text/plain")
        assert parsed.scans or parsed.errors
        kept = repr(parsed)
        assert not [name for name in NAMES if name in kept.upper()], kept
    assert len(parse(bad, "text/plain").errors) == 2


def test_a_message_without_j_has_no_time():
    parsed = parse(type_b(BSM_CHECKIN.replace(".J/R/AGENT01/KIOSK4/14NOV/2150L\n", "")), "text/plain")
    assert parsed.scans == []
    assert parsed.errors == [LineError(1, "no time: the message has no .J/ element")]


def test_a_local_time_at_a_station_of_unknown_zone_is_refused_and_zones_can_be_given():
    body = type_b(BPM_TRANSFER_LOADED.replace(".V/1TFRA", ".V/1TXYZ"))
    parsed = parse(body, "text/plain")
    assert parsed.scans == []
    assert len(parsed.errors) == 1 and "local time at XYZ" in parsed.errors[0].detail
    [scan] = parse(body, "text/plain", station_zones={"XYZ": "Asia/Kolkata"}).scans
    assert (scan.station, scan.at) == ("XYZ", dt.datetime(2024, 11, 15, 4, 2, tzinfo=UTC))  # +05:30


def test_a_date_without_a_year_takes_the_nearest_year():
    late = dt.datetime(2025, 1, 2, 0, 30, tzinfo=UTC)
    body = type_b(BPM_TRANSFER_LOADED.replace("15NOV/0932L", "31DEC/2355Z"))
    [scan] = parse_scans(body, "text/plain", received_at=late).scans
    assert scan.at == dt.datetime(2024, 12, 31, 23, 55, tzinfo=UTC)
    early = dt.datetime(2024, 12, 31, 23, 58, tzinfo=UTC)
    body = type_b(BPM_TRANSFER_LOADED.replace("15NOV/0932L", "01JAN/0003Z"))
    [scan] = parse_scans(body, "text/plain", received_at=early).scans
    assert scan.at == dt.datetime(2025, 1, 1, 0, 3, tzinfo=UTC)  # five minutes ahead: within the slack


def test_a_type_b_time_in_the_future_is_refused():
    body = type_b(BPM_TRANSFER_LOADED.replace("15NOV/0932L", "15NOV/1011Z"))
    parsed = parse(body, "text/plain")
    assert parsed.scans == []
    assert parsed.errors == [LineError(1, "the time of .J/ is in the future")]


def test_bpm_points_follow_the_source_indicator_and_the_outbound_flight():
    def point_of(version, flight_line):
        text = BPM_TRANSFER_LOADED.replace(".V/1TFRA", version).replace(".F/LH400/15NOV/JFK/Y", flight_line)
        return [s.point for s in parse(type_b(text), "text/plain").scans]

    assert point_of(".V/1TFRA", ".F/LH400/15NOV/JFK/Y") == ["loading"]
    assert point_of(".V/1LFRA", ".F/LH400/15NOV/JFK/Y") == ["loading"]
    assert point_of(".V/1XFRA", ".I/UA960/14NOV/JFK") == ["arrival"]
    assert point_of(".V/1TFRA", ".I/UA960/14NOV/JFK") == ["transfer"]
    assert point_of(".V/1LFRA", ".I/UA960/14NOV/JFK") == []  # a local BPM with no outbound flight


def test_broken_messages_are_errors_at_their_first_line_and_the_others_are_kept():
    body = type_b("BPM\n.V/1TFRA\n.N/0016000001001\n\n" + BPM_TRANSFER_LOADED + BSM_CHECKIN.replace("ENDBSM", "ENDBPM"))
    parsed = parse(body, "text/plain")
    assert [s.bag_tag for s in parsed.scans] == ["0016123456"]
    assert parsed.errors == [LineError(1, "the BPM has no ENDBPM line"), LineError(12, "the BSM ends with ENDBPM")]


def test_a_deleted_bsm_is_no_scan():
    parsed = parse(type_b(BSM_CHECKIN.replace("BSM\n", "BSM\nDEL\n", 1)), "text/plain")
    assert (parsed.scans, parsed.errors) == ([], [])
    assert len(parse(type_b(BSM_CHECKIN.replace("BSM\n", "BSM\nCHG\n", 1)), "text/plain").scans) == 1


def test_a_plain_text_body_without_a_bag_message_is_refused():
    with pytest.raises(ValueError, match="no IATA bag message"):
        parse("QD FRAKLLH\nhello\n", "text/plain")


# --- CSV ----------------------------------------------------------------------------------------------

def test_csv_with_quoted_notes_in_any_column_order():
    body = (
        'point,bag_tag,at,station,flight,note\r\n'
        'loading,0016 123456,2024-11-15T09:32:00+01:00,fra,lh 400,"belt 4, position 2"\r\n'
        '\r\n'
        'arrival,0016123457,2024-11-15T09:40:00Z,JFK,,"said ""fragile"", then\r\nleft"\r\n'
        'delivery,0016123458,2024-11-15T09:45:00Z,,,\r\n'
    )
    parsed = parse(body, "text/csv")
    assert parsed.errors == []
    assert parsed.scans == [
        Scan(line=2, bag_tag="0016123456", at=dt.datetime(2024, 11, 15, 8, 32, tzinfo=UTC), station="FRA",
             point="loading", flight="LH400", note="belt 4, position 2"),
        Scan(line=4, bag_tag="0016123457", at=dt.datetime(2024, 11, 15, 9, 40, tzinfo=UTC), station="JFK",
             point="arrival", flight=None, note='said "fragile", then\r\nleft'),
        Scan(line=6, bag_tag="0016123458", at=dt.datetime(2024, 11, 15, 9, 45, tzinfo=UTC), station=None,
             point="delivery", flight=None, note=None),
    ]


def test_csv_lines_with_a_missing_field_or_bad_values_are_errors_with_their_line_numbers():
    body = (
        "bag_tag,at,point,note\n"
        "0016123456,2024-11-15T09:00:00Z,loading,ok\n"
        "0016123457,2024-11-15T09:00:00Z,loading\n"  # a field short
        "LH123456,2024-11-15T09:00:00Z,lost,x\n"
        '0016123459,2024-11-15T09:00:00Z,arrival,"fine"\n'
    )
    parsed = parse(body, "text/csv")
    assert [s.line for s in parsed.scans] == [2, 5]
    assert parsed.errors == [
        LineError(3, "expected 4 fields, found 3"),
        LineError(4, "bag_tag must be 10 digits; point must be one of " + ", ".join(POINTS)),
    ]


@pytest.mark.parametrize(("header", "message"), [
    ("bag_tag,station,point", "lacks the column: at"),
    ("bag_tag,at,point,staton", "unknown CSV column: staton"),
    ("bag_tag,at,point,at", "repeated CSV column: at"),
])
def test_a_csv_header_without_a_required_column_or_with_an_unknown_one_is_refused(header, message):
    with pytest.raises(ValueError, match=message):
        parse(header + "\n0016123456,2024-11-15T09:00:00Z,loading\n", "text/csv")


def test_a_10000_scan_csv_is_read():
    rows = [f"{1_000_000_000 + i},2024-11-15T0{i % 10}:{i % 60:02d}:00Z,transfer,FRA,LH400,row {i}"
            for i in range(10_000)]
    body = ("bag_tag,at,point,station,flight,note\n" + "\n".join(rows) + "\n").encode()
    parsed = parse_scans(body, "text/csv", received_at=RECEIVED)
    assert parsed.errors == []
    assert len(parsed.scans) == 10_000
    assert parsed.scans[-1].line == 10_001


def test_10001_csv_scans_are_refused():
    body = "bag_tag,at,point\n" + "0016123456,2024-11-15T09:00:00Z,loading\n" * 10_001
    with pytest.raises(ValueError, match=r"^at most 10,000 scans per request$"):
        parse(body, "text/csv")


# --- JSON ---------------------------------------------------------------------------------------------

def good_item(**changes):
    item = {"bag_tag": "0016123456", "at": "2024-11-15T09:32:00Z", "station": "FRA", "point": "loading",
            "flight": "LH400", "note": None}
    item.update(changes)
    return item


def json_body(items):
    return json.dumps({"scans": items})


def test_json_keeps_the_good_items_and_reports_the_bad_one_by_position():
    parsed = parse(json_body([good_item(), good_item(bag_tag="00161234"), good_item(bag_tag="0016123457")]),
                   "application/json")
    assert [(s.line, s.bag_tag) for s in parsed.scans] == [(1, "0016123456"), (3, "0016123457")]
    assert parsed.errors == [LineError(2, "bag_tag must be 10 digits")]


def test_json_item_problems_are_named():
    parsed = parse(json_body([
        good_item(bag_tag=16123456),
        good_item(station="FRANKFURT", flight="LUFTHANSA", note="x" * 501),
        good_item(staton="FRA"),
        "0016123456",
        {"at": "2024-11-15T09:32:00Z"},
    ]), "application/json")
    assert parsed.scans == []
    assert parsed.errors == [
        LineError(1, "bag_tag must be a string"),
        LineError(2, "station must be a 3-letter IATA airport code; flight must be an airline designator and a "
                     "number, e.g. LH400; note must be at most 500 characters"),
        LineError(3, "unknown field: staton"),
        LineError(4, "a scan must be an object"),
        LineError(5, "bag_tag is required; point is required"),
    ]


def test_a_time_in_the_future_is_refused_and_ten_minutes_of_clock_skew_are_not():
    parsed = parse(json_body([good_item(at="2024-11-15T10:10:00Z"), good_item(at="2024-11-15T10:10:01Z"),
                              good_item(at="2024-11-15T11:15:00+01:00"), good_item(at="1999-12-31T23:59:59Z")]),
                   "application/json")
    assert [s.line for s in parsed.scans] == [1]
    assert parsed.errors == [LineError(2, "at is in the future"), LineError(3, "at is in the future"),
                             LineError(4, "at is before 2000")]


@pytest.mark.parametrize("value", ["2024-11-15T09:32:00", "2024-11-15 09:32:00"])
def test_a_time_without_an_offset_is_refused(value):
    parsed = parse(json_body([good_item(at=value)]), "application/json")
    assert parsed.scans == []
    assert parsed.errors == [LineError(1, "at must have a UTC offset (Z or e.g. +01:00)")]


def test_times_are_kept_in_utc():
    parsed = parse(json_body([good_item(at="2024-11-15T04:32:00.250-05:00")]), "application/json")
    assert parsed.scans[0].at == dt.datetime(2024, 11, 15, 9, 32, 0, 250_000, tzinfo=UTC)
    assert parsed.scans[0].at.utcoffset() == dt.timedelta(0)


@pytest.mark.parametrize("body", [b'[{"bag_tag": "0016123456"}]', b'{"scans": {}}', b'{"scans": [], "x": 1}',
                                  b'{"scans": [', b""])
def test_a_json_body_of_another_shape_is_refused(body):
    with pytest.raises(ValueError) as refused:
        parse(body, "application/json")
    assert str(refused.value)


def test_10001_json_scans_are_refused_and_10000_are_not():
    with pytest.raises(ValueError, match=r"^at most 10,000 scans per request$"):
        parse(json_body([good_item()] * 10_001), "application/json")
    assert len(parse(json_body([good_item()] * 10_000), "application/json").scans) == 10_000


def test_10001_type_b_tags_are_refused():
    messages = BPM_TRANSFER_LOADED.replace(".N/0016123456001", ".N/0016100000999") * 10  # 9,990 tags
    body = messages + BPM_TRANSFER_LOADED.replace(".N/0016123456001", ".N/0016200000011")
    with pytest.raises(ValueError, match=r"^at most 10,000 scans per request$"):
        parse(type_b(body), "text/plain")
    assert len(parse(type_b(messages + BPM_TRANSFER_LOADED.replace("001\n", "010\n")), "text/plain").scans) == 10_000


# --- the body as a whole ------------------------------------------------------------------------------

def test_a_body_that_is_not_utf8_is_refused():
    with pytest.raises(ValueError, match="UTF-8"):
        parse("bag_tag,at,point,note\n0016123456,2024-11-15T09:00:00Z,loading,café\n".encode("latin-1"),
              "text/csv")


def test_a_utf8_byte_order_mark_is_not_part_of_the_header():
    body = "\ufeffbag_tag,at,point\n0016123456,2024-11-15T09:00:00Z,loading\n".encode()
    assert len(parse(body, "text/csv").scans) == 1


def test_another_media_type_is_refused():
    with pytest.raises(ValueError, match="application/json, text/csv or text/plain"):
        parse(json_body([good_item()]), "application/xml")


def test_a_naive_received_at_is_a_programming_error():
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_scans(b"", "text/csv", received_at=dt.datetime(2024, 11, 15, 10, 0))


def test_at_most_100_errors_are_listed_and_the_rest_counted():
    parsed = parse(json_body([good_item(point="lost")] * 250 + [good_item()]), "application/json")
    assert len(parsed.scans) == 1
    assert len(parsed.errors) == 101
    assert [e.line for e in parsed.errors[:100]] == list(range(1, 101))
    assert parsed.errors[100] == LineError(101, "… and 150 more lines with errors")


def test_a_bag_tag_is_ten_ascii_digits_and_loses_its_spaces_and_dashes():
    parsed = parse(json_body([good_item(bag_tag="0016-123 456"), good_item(bag_tag="\u0660" * 10),
                              good_item(bag_tag="LH123456"), good_item(bag_tag="00161234567")]), "application/json")
    assert [s.bag_tag for s in parsed.scans] == ["0016123456"]
    assert parsed.errors == [LineError(line, "bag_tag must be 10 digits") for line in (2, 3, 4)]


@pytest.mark.parametrize(("given", "kept"), [("LH400", "LH400"), ("lh 0400", "LH400"), ("U21234", "U21234"),
                                             ("DLH400", "DLH400"), ("BA12A", "BA12A"), ("12345", None),
                                             ("LH", None), ("LH12345", None)])
def test_flights_are_normalized(given, kept):
    assert normalize_flight(given) == kept
