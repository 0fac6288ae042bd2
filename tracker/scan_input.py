"""Bag scans as partners send them to ``POST /v1/scans``: JSON, CSV or IATA Type B bag messages.

``parse_scans`` turns a body into ``Scan`` records plus one ``LineError`` per line (or message)
that could not be read; the good lines are kept. A body that is not one of the three forms as a
whole (not UTF-8, not the JSON shape, no CSV header, no bag message at all, more than 10,000
scans, another media type) raises ``ValueError`` with a message meant for the sender. Pure
functions: no database, no web framework.

What every scan must be
-----------------------
* ``bag_tag``: the 10-digit IATA licence plate. Spaces and dashes are dropped; anything else
  that is not a digit is an error (so is a number in JSON: it would lose its leading zeros).
* ``at``: an RFC 3339 date-time with a UTC offset (``Z`` or ``+01:00``), kept in UTC. A time
  without an offset is an error, as is one more than 10 minutes after the body was received
  ("in the future") or one before 2000.
* ``point``: one of ``POINTS``. ``station``: three letters (upper-cased). ``flight``: an airline
  designator and a number (``LH400``, ``lh 0400`` -> ``LH400``: upper case, no spaces, no
  leading zeros, an optional one-letter suffix kept). ``note``: at most 500 characters.
* JSON is ``{"scans": [{bag_tag, at, station, point, flight, note}, ...]}``; a member not among
  those is an error (a misspelt ``staton`` would otherwise be dropped without a word). A line
  number is the item's index + 1.
* CSV (RFC 4180) has a header line naming those columns in any order (``bag_tag``, ``at`` and
  ``point`` required); an unknown or repeated column rejects the body. Blank lines are skipped;
  a line number is the one the record starts on in the file.

IATA Type B bag messages (``text/plain``; Recommended Practice 1745)
--------------------------------------------------------------------
A body holds one or more messages. Each begins with a line ``BSM`` or ``BPM`` and ends with
``ENDBSM`` / ``ENDBPM``; whatever stands outside them (the Type B heading and address lines,
``QD FRAKLLH`` / ``.JFKBSUA 151032``, blank lines, the SOH/STX/ETX framing) is skipped. A line
that opens a message is the line number of all its scans and of its error. A message is read as
a whole: when any of it is wrong there is one ``LineError`` for it and no scan. A BSM whose
second line is ``DEL`` (the bag's data withdrawn) is not a scan and is skipped without error.

Exactly these elements are read; the first of each kind counts, except ``.N/``:

``.V/`` version and supplementary data, ``.V/1LFRA``: the data dictionary version (a digit),
    the baggage source indicator (``L`` local, ``T`` transfer, ``X`` terminating, ``R`` remote
    check-in) and the airport the message reports from, which is the scan's ``station``.
    Required: without it neither the station nor the point is known.
``.N/`` bag tag details, ``.N/0016123456003``: a 10-digit tag and a 3-digit count of
    consecutive tags (1 to 999); every ``.N/`` line of the message is read and each count is
    expanded into that many tags, the last six digits (the serial number) counting up, so
    ``0016123456003`` is ``0016123456``, ``0016123457`` and ``0016123458``. A missing count is 1.
``.F/`` outbound flight, ``.F/LH400/15NOV/JFK/Y``: the flight (``LH400``); date, destination
    and class are not read.
``.I/`` inbound flight, ``.I/UA123/14NOV/FRA``: the flight (``UA123``), used for arrivals and
    when there is no ``.F/``.
``.J/`` processing (reconciliation) data, ``.J/R/AGENT1/SCANNER7/15NOV/0932L``: the secondary
    code, agent and scanner identifications are not read; the scan's time is the first field
    shaped as a date ``DDMMM`` immediately followed by a time ``HHMM`` with an optional
    indicator: ``L`` (or none) local time at the ``.V/`` station, ``Z`` or ``G`` UTC. The year
    is the one that puts the date nearest to when the body was received. A local time is
    converted with the station's time zone (``STATION_ZONES``, or the ``station_zones`` given);
    a station whose zone is not known makes the message an error rather than a guess.
    No ``.J/`` (or none with a date and time) is the error "no time".

The point of the scan follows from the message and the source indicator:

* BSM: ``L`` and ``R`` -> ``acceptance``; ``T`` -> ``transfer``; ``X`` -> ``arrival``.
* BPM: ``X`` -> ``arrival``; otherwise a ``.F/`` -> ``loading`` (the bag was processed for its
  outbound flight, transfer bags included); otherwise ``T`` -> ``transfer``; a local BPM with no
  outbound flight is an error (no point can be told).

The flight is the inbound one (``.I/``) for an arrival and the outbound one (``.F/``) otherwise,
each falling back on the other.

Everything else is ignored on purpose and never kept: ``.P/`` (the passenger's name), ``.B/``
(baggage irregularities), ``.O/`` (onward flights), ``.S/`` (reconciliation data: seat, passenger
status), ``.W/`` (pieces and weight), ``.D/`` (check-in details), ``.L/`` (the PNR), ``.Y/``
(frequent flyer number), every other element and any line that is not an element (``CHG``
included). An error's words never repeat a line of the message, so no part of a passenger's
record travels on in them.

Limits
------
At most 10,000 scans per body (Type B counts the expanded tags): more raises
``ValueError("at most 10,000 scans per request")``. At most 100 errors are reported; the rest
are counted in one last ``LineError`` ("… and N more lines with errors") at the first line left
out.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "MAX_ERRORS",
    "MAX_SCANS",
    "POINTS",
    "STATION_ZONES",
    "LineError",
    "Parsed",
    "Scan",
    "parse_scans",
]

POINTS = ("acceptance", "loading", "transfer", "arrival", "delivery", "on_hand")
MAX_SCANS = 10_000
MAX_ERRORS = 100
NOTE_MAX = 500
FUTURE_SLACK = dt.timedelta(minutes=10)
EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
FIELDS = ("bag_tag", "at", "station", "point", "flight", "note")
REQUIRED = ("bag_tag", "at", "point")

# Time zones of the stations whose Type B local times (``.J/ ... /0932L``) can be converted.
# Extend or replace it per call with ``parse_scans(..., station_zones=...)``.
STATION_ZONES: dict[str, str] = {
    # Europe
    "AMS": "Europe/Amsterdam", "ARN": "Europe/Stockholm", "ATH": "Europe/Athens", "BCN": "Europe/Madrid",
    "BER": "Europe/Berlin", "BRU": "Europe/Brussels", "CDG": "Europe/Paris", "CPH": "Europe/Copenhagen",
    "DUB": "Europe/Dublin", "DUS": "Europe/Berlin", "FCO": "Europe/Rome", "FRA": "Europe/Berlin",
    "GVA": "Europe/Zurich", "HAM": "Europe/Berlin", "HEL": "Europe/Helsinki", "IST": "Europe/Istanbul",
    "LGW": "Europe/London", "LHR": "Europe/London", "LIS": "Europe/Lisbon", "MAD": "Europe/Madrid",
    "MAN": "Europe/London", "MUC": "Europe/Berlin", "MXP": "Europe/Rome", "NCE": "Europe/Paris",
    "ORY": "Europe/Paris", "OSL": "Europe/Oslo", "PRG": "Europe/Prague", "VIE": "Europe/Vienna",
    "WAW": "Europe/Warsaw", "ZRH": "Europe/Zurich",
    # The Americas
    "ATL": "America/New_York", "BOG": "America/Bogota", "BOS": "America/New_York", "DEN": "America/Denver",
    "DFW": "America/Chicago", "EWR": "America/New_York", "EZE": "America/Argentina/Buenos_Aires",
    "GRU": "America/Sao_Paulo", "IAD": "America/New_York", "IAH": "America/Chicago",
    "JFK": "America/New_York", "LAX": "America/Los_Angeles", "LGA": "America/New_York",
    "MEX": "America/Mexico_City", "MIA": "America/New_York", "ORD": "America/Chicago",
    "PHX": "America/Phoenix", "PTY": "America/Panama", "SEA": "America/Los_Angeles",
    "SFO": "America/Los_Angeles", "YUL": "America/Toronto", "YVR": "America/Vancouver",
    "YYZ": "America/Toronto", "HNL": "Pacific/Honolulu",
    # Middle East, Africa, Asia, Oceania
    "AKL": "Pacific/Auckland", "AUH": "Asia/Dubai", "BKK": "Asia/Bangkok", "BOM": "Asia/Kolkata",
    "CAI": "Africa/Cairo", "DEL": "Asia/Kolkata", "DOH": "Asia/Qatar", "DXB": "Asia/Dubai",
    "HKG": "Asia/Hong_Kong", "HND": "Asia/Tokyo", "ICN": "Asia/Seoul", "JNB": "Africa/Johannesburg",
    "KUL": "Asia/Kuala_Lumpur", "MEL": "Australia/Melbourne", "NRT": "Asia/Tokyo", "PEK": "Asia/Shanghai",
    "PVG": "Asia/Shanghai", "SIN": "Asia/Singapore", "SYD": "Australia/Sydney", "TLV": "Asia/Jerusalem",
}


@dataclass(frozen=True, slots=True)
class Scan:
    line: int  # 1-based: CSV, the line the record starts on; JSON, index + 1; Type B, the BSM/BPM line
    bag_tag: str  # 10 digits
    at: dt.datetime  # aware, UTC
    station: str | None  # 3 letters, upper case
    point: str  # one of POINTS
    flight: str | None  # "LH400"
    note: str | None  # at most 500 characters


@dataclass(frozen=True, slots=True)
class LineError:
    line: int
    detail: str


@dataclass(frozen=True, slots=True)
class Parsed:
    scans: list[Scan]
    errors: list[LineError]


def parse_scans(body: bytes, content_type: str, *, received_at: dt.datetime,
                station_zones: Mapping[str, str | dt.tzinfo] | None = None) -> Parsed:
    """The scans of a body of ``content_type`` (its media type), and the lines that are not scans."""
    if received_at.tzinfo is None or received_at.utcoffset() is None:
        raise ValueError("received_at must be timezone-aware")
    received_at = received_at.astimezone(dt.UTC)
    media = content_type.split(";", 1)[0].strip().lower()
    if media not in ("application/json", "text/csv", "text/plain"):
        raise ValueError("scans come as application/json, text/csv or text/plain (IATA bag messages)")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("the body must be UTF-8") from None
    text = text.removeprefix("\ufeff")
    scans: list[Scan] = []
    errors: list[LineError] = []
    if media == "application/json":
        _read_json(text, received_at, scans, errors)
    elif media == "text/csv":
        _read_csv(text, received_at, scans, errors)
    else:
        zones = STATION_ZONES if station_zones is None else station_zones
        _read_type_b(text, received_at, zones, scans, errors)
    if len(errors) > MAX_ERRORS:
        rest = len(errors) - MAX_ERRORS
        errors = [*errors[:MAX_ERRORS],
                  LineError(errors[MAX_ERRORS].line, f"… and {rest:,} more lines with errors")]
    return Parsed(scans=scans, errors=errors)


def _too_many() -> ValueError:
    return ValueError(f"at most {MAX_SCANS:,} scans per request")


# --- the fields of a scan (JSON and CSV) -------------------------------------------------------

_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?P<zone>[Zz]|[+-]\d{2}:\d{2})?", re.ASCII)
_FLIGHT = re.compile(r"(?P<airline>[A-Z0-9]{2}|[A-Z]{3})(?P<number>\d{1,4})(?P<suffix>[A-Z]?)", re.ASCII)
_STATION = re.compile(r"[A-Z]{3}", re.ASCII)
_TAG = re.compile(r"\d{10}", re.ASCII)
_TAG_NOISE = re.compile(r"[\s-]+", re.ASCII)


def normalize_tag(value: str) -> str | None:
    """A 10-digit licence plate without its spaces and dashes, or None."""
    tag = _TAG_NOISE.sub("", value)
    return tag if _TAG.fullmatch(tag) else None


def normalize_flight(value: str) -> str | None:
    """``LH400`` from ``lh 0400``; None for what is not an airline designator and a flight number."""
    match = _FLIGHT.fullmatch("".join(value.split()).upper())
    if match is None or match["airline"].isdigit():
        return None
    return f"{match['airline']}{int(match['number'])}{match['suffix']}"


def _parse_at(value: str) -> tuple[dt.datetime | None, str | None]:
    match = _RFC3339.fullmatch(value)
    if match is None:
        return None, "at must be an RFC 3339 date-time, e.g. 2024-11-15T09:32:00Z"
    if match["zone"] is None:
        return None, "at must have a UTC offset (Z or e.g. +01:00)"
    text = value[:10] + "T" + value[11:]
    if text[-1] in "Zz":
        text = text[:-1] + "+00:00"
    try:
        return dt.datetime.fromisoformat(text).astimezone(dt.UTC), None
    except ValueError:
        return None, "at is not a valid date-time"


def _check_time(at: dt.datetime, received_at: dt.datetime) -> str | None:
    if at > received_at + FUTURE_SLACK:
        return "at is in the future"
    if at < EARLIEST:
        return "at is before 2000"
    return None


def _scan_from_fields(line: int, values: Mapping[str, Any], received_at: dt.datetime) -> Scan | list[str]:
    """A scan from named values (strings, or None when absent or empty), or the problems found."""
    problems: list[str] = []

    def text(name: str) -> str | None:
        value = values.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            problems.append(f"{name} must be a string")
            return None
        return value.strip() or None

    raw_tag, raw_at, raw_point = text("bag_tag"), text("at"), text("point")
    raw_station, raw_flight, note = text("station"), text("flight"), text("note")
    for name, value in (("bag_tag", raw_tag), ("at", raw_at), ("point", raw_point)):
        if value is None and not any(p.startswith(name + " ") for p in problems):
            problems.append(f"{name} is required")
    tag = None
    if raw_tag is not None:
        tag = normalize_tag(raw_tag)
        if tag is None:
            problems.append("bag_tag must be 10 digits")
    at = None
    if raw_at is not None:
        at, problem = _parse_at(raw_at)
        problem = problem or (_check_time(at, received_at) if at else None)
        if problem:
            problems.append(problem)
    point = None
    if raw_point is not None:
        point = raw_point.lower()
        if point not in POINTS:
            problems.append("point must be one of " + ", ".join(POINTS))
    station = None
    if raw_station is not None:
        station = raw_station.upper()
        if not _STATION.fullmatch(station):
            problems.append("station must be a 3-letter IATA airport code")
    flight = None
    if raw_flight is not None:
        flight = normalize_flight(raw_flight)
        if flight is None:
            problems.append("flight must be an airline designator and a number, e.g. LH400")
    if note is not None and len(note) > NOTE_MAX:
        problems.append(f"note must be at most {NOTE_MAX} characters")
    if problems:
        return problems
    assert tag is not None and at is not None and point is not None
    return Scan(line=line, bag_tag=tag, at=at, station=station, point=point, flight=flight, note=note)


def _keep(result: Scan | list[str], line: int, scans: list[Scan], errors: list[LineError]) -> None:
    if isinstance(result, Scan):
        scans.append(result)
    else:
        errors.append(LineError(line, "; ".join(result)))


# --- JSON -----------------------------------------------------------------------------------------

def _read_json(text: str, received_at: dt.datetime, scans: list[Scan], errors: list[LineError]) -> None:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as bad:
        raise ValueError(f"the body is not JSON: {bad.msg} (line {bad.lineno}, column {bad.colno})") from None
    if not isinstance(data, dict) or set(data) != {"scans"} or not isinstance(data["scans"], list):
        raise ValueError('a JSON body must be an object with one member, "scans", a list of scans')
    items = data["scans"]
    if len(items) > MAX_SCANS:
        raise _too_many()
    for index, item in enumerate(items):
        line = index + 1
        if not isinstance(item, dict):
            errors.append(LineError(line, "a scan must be an object"))
            continue
        unknown = sorted(str(key) for key in item if key not in FIELDS)
        result = _scan_from_fields(line, item, received_at)
        if unknown:
            result = [*(result if isinstance(result, list) else []), "unknown field: " + ", ".join(unknown)]
        _keep(result, line, scans, errors)


# --- CSV ------------------------------------------------------------------------------------------

def _records(text: str) -> Iterator[tuple[int, list[str] | None, str | None]]:
    """(start line, fields, None) for each non-blank record, (start line, None, problem) for a malformed one."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as bad:
            yield start, None, f"not a CSV record: {bad}"
            continue
        if row and (len(row) > 1 or row[0].strip()):
            yield start, row, None


def _read_csv(text: str, received_at: dt.datetime, scans: list[Scan], errors: list[LineError]) -> None:
    records = _records(text)
    _, header, _ = next(records, (0, None, None))
    if header is None:
        raise ValueError("a CSV body starts with a header line: bag_tag,at,station,point,flight,note")
    names = [name.strip().lower() for name in header]
    unknown = [name for name in names if name not in FIELDS]
    if unknown:
        raise ValueError(f"unknown CSV column: {', '.join(unknown)} (the columns are {', '.join(FIELDS)})")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"repeated CSV column: {', '.join(repeated)}")
    missing = [name for name in REQUIRED if name not in names]
    if missing:
        raise ValueError(f"the CSV header lacks the column: {', '.join(missing)}")
    count = 0
    for line, row, problem in records:
        count += 1
        if count > MAX_SCANS:
            raise _too_many()
        if row is None:
            errors.append(LineError(line, problem or "not a CSV record"))
        elif len(row) != len(names):
            errors.append(LineError(line, f"expected {len(names)} fields, found {len(row)}"))
        else:
            _keep(_scan_from_fields(line, dict(zip(names, row)), received_at), line, scans, errors)


# --- IATA Type B (RP 1745) -----------------------------------------------------------------------

_LINE_BREAK = re.compile(r"\r*\n|\r+", re.ASCII)
_FRAMING = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", re.ASCII)
_ELEMENT = re.compile(r"\.([A-Z])/(.*)", re.ASCII)
_VERSION = re.compile(r"(?P<version>\d)(?P<source>[LTXR])(?P<station>[A-Z]{3})", re.ASCII)
_TAG_COUNT = re.compile(r"(?P<tag>\d{10})(?P<count>\d{3})?", re.ASCII)
_DATE = re.compile(r"(?P<day>\d{2})(?P<month>[A-Z]{3})", re.ASCII)
_TIME = re.compile(r"(?P<hour>\d{2})(?P<minute>\d{2})(?P<zone>[LZG]?)", re.ASCII)
_MONTHS = {name: number for number, name in enumerate(
    ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), start=1)}


@dataclass(slots=True)
class _Message:
    kind: str  # "BSM" or "BPM"
    line: int
    lines: list[str] = field(default_factory=list)


def _messages(text: str, errors: list[LineError]) -> list[_Message]:
    """The complete BSM/BPM messages of a body; an unterminated one is an error."""
    found: list[_Message] = []
    current: _Message | None = None
    for number, raw in enumerate(_LINE_BREAK.split(_FRAMING.sub("", text)), start=1):
        line = raw.strip().upper()
        if line in ("BSM", "BPM"):
            if current is not None:
                errors.append(LineError(current.line, f"the {current.kind} has no END{current.kind} line"))
            current = _Message(kind=line, line=number)
        elif current is None:
            continue  # a heading, an address, a blank line between messages
        elif line in ("ENDBSM", "ENDBPM"):
            if line[3:] == current.kind:
                found.append(current)
            else:
                errors.append(LineError(current.line, f"the {current.kind} ends with {line}"))
            current = None
        elif line:
            current.lines.append(line)
    if current is not None:
        errors.append(LineError(current.line, f"the {current.kind} has no END{current.kind} line"))
    return found


def _read_type_b(text: str, received_at: dt.datetime, zones: Mapping[str, str | dt.tzinfo],
                 scans: list[Scan], errors: list[LineError]) -> None:
    messages = _messages(text, errors)
    if not messages and not errors:
        raise ValueError("no IATA bag message: each begins with a line BSM or BPM and ends with ENDBSM or ENDBPM")
    for message in messages:
        found, problems = _read_message(message, received_at, zones)
        if problems:
            errors.append(LineError(message.line, "; ".join(problems)))
        scans.extend(found)
        if len(scans) > MAX_SCANS:
            raise _too_many()
    errors.sort(key=lambda error: error.line)


def _read_message(message: _Message, received_at: dt.datetime,
                  zones: Mapping[str, str | dt.tzinfo]) -> tuple[list[Scan], list[str]]:
    """The scans of one message (none for a BSM ``DEL``), or (none and) its problems."""
    if message.kind == "BSM" and message.lines[:1] == ["DEL"]:
        return [], []
    elements: dict[str, list[str]] = {}
    tags_fields: list[str] = []
    for line in message.lines:
        match = _ELEMENT.fullmatch(line)
        if match is None or match[1] not in "VNFIJ":
            continue  # every other element (.P/ the passenger's name among them) is ignored
        if match[1] == "N":
            tags_fields.append(match[2].split("/")[0].strip())
        else:
            elements.setdefault(match[1], [f.strip() for f in match[2].split("/")])
    problems: list[str] = []

    station = source = None
    version = elements.get("V")
    match = _VERSION.fullmatch(version[0]) if version else None
    if match is None:
        problems.append("no .V/ element with the source indicator and station (e.g. .V/1LFRA)")
    else:
        source, station = match["source"], match["station"]

    tags: list[str] = []
    if not tags_fields:
        problems.append("no bag tag (.N/ element)")
    for value in tags_fields:
        match = _TAG_COUNT.fullmatch(value)
        if match is None:
            problems.append("bag_tag must be 10 digits and a 3-digit count (.N/ element)")
            continue
        tag, number = match["tag"], int(match["count"] or "1")
        if not 1 <= number <= 999:
            problems.append("the tag count of .N/ must be 1 to 999")
            continue
        serial = int(tag[4:])
        if serial + number - 1 > 999_999:
            problems.append("the tags of .N/ run past the end of the serial numbers")
            continue
        tags.extend(f"{tag[:4]}{serial + k:06d}" for k in range(number))

    outbound = inbound = None
    for key, name in (("F", "outbound"), ("I", "inbound")):
        if key in elements:
            flight = normalize_flight(elements[key][0])
            if flight is None:
                problems.append(f"the {name} flight (.{key}/) must be an airline designator and a number")
            elif key == "F":
                outbound = flight
            else:
                inbound = flight

    point = None
    if source is not None:
        if message.kind == "BSM":
            point = {"L": "acceptance", "R": "acceptance", "T": "transfer", "X": "arrival"}[source]
        elif source == "X":
            point = "arrival"
        elif "F" in elements:
            point = "loading"
        elif source == "T":
            point = "transfer"
        else:
            problems.append("no point: a BPM from a local station must name its outbound flight (.F/)")
    flight = (inbound or outbound) if point == "arrival" else (outbound or inbound)

    at = None
    if "J" not in elements:
        problems.append("no time: the message has no .J/ element")
    else:
        at, problem = _processing_time(elements["J"], station, received_at, zones)
        if problem:
            problems.append(problem)
    if problems:
        return [], problems
    assert at is not None and point is not None
    return [Scan(line=message.line, bag_tag=tag, at=at, station=station, point=point, flight=flight, note=None)
            for tag in tags], []


def _processing_time(fields: list[str], station: str | None, received_at: dt.datetime,
                     zones: Mapping[str, str | dt.tzinfo]) -> tuple[dt.datetime | None, str | None]:
    """The UTC time of a ``.J/`` element: its first ``DDMMM`` field and the ``HHMM[L|Z|G]`` after it."""
    for index, value in enumerate(fields[:-1]):
        date, time = _DATE.fullmatch(value), _TIME.fullmatch(fields[index + 1])
        if date is None or time is None or date["month"] not in _MONTHS:
            continue
        day, month = int(date["day"]), _MONTHS[date["month"]]
        hour, minute = int(time["hour"]), int(time["minute"])
        if hour > 23 or minute > 59:
            return None, "the time of .J/ is not a valid time"
        zone: dt.tzinfo = dt.UTC
        if time["zone"] in ("", "L"):
            found = _zone(station, zones)
            if found is None:
                return None, (f"the time of .J/ is local time at {station or 'an unknown station'}, whose time zone "
                              "is not known: send it in UTC (e.g. 0832Z)")
            zone = found
        candidates = []
        for year in (received_at.year - 1, received_at.year, received_at.year + 1):
            try:
                local = dt.datetime(year, month, day, hour, minute, tzinfo=zone)
            except ValueError:
                continue  # 29FEB in a year without it
            candidates.append(local.astimezone(dt.UTC))
        if not candidates:
            return None, "the date of .J/ is not a valid date"
        at = min(candidates, key=lambda c: abs(c - received_at))
        problem = _check_time(at, received_at)
        return (None, f"the time of .J/ {problem.removeprefix('at ')}") if problem else (at, None)
    return None, "no time: the .J/ element has no date (DDMMM) followed by a time (HHMM)"


def _zone(station: str | None, zones: Mapping[str, str | dt.tzinfo]) -> dt.tzinfo | None:
    name = zones.get(station) if station else None
    if name is None or isinstance(name, dt.tzinfo):
        return name
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None
