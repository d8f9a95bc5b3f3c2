"""The Date header's exact forms (spec 2.3) are read without the lenient parser, and read
the same as it would; an impossible value in an exact form is refused, never re-read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
from dateutil import parser as date_parser
from hypothesis import given
from hypothesis import strategies as st

from crucible import auth

ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=9)), timezone(-timedelta(hours=5, minutes=30))]
)
DATES = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=ZONES
)


@pytest.fixture
def no_lenient_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(raw: str) -> datetime:
        raise AssertionError(f"the lenient parser was asked for {raw!r}")

    monkeypatch.setattr(date_parser, "parse", refuse)  # the module auth reads it from


@given(DATES)
def test_the_clients_iso_form_reads_as_the_lenient_parser_reads_it(when: datetime) -> None:
    raw = when.isoformat()  # what the 18.12 client sends, fraction and all
    assert auth._parse_exact_date(raw) == date_parser.parse(raw) == when


@given(DATES)
def test_rfc_1123_reads_as_the_lenient_parser_reads_it(when: datetime) -> None:
    raw = format_datetime(when.astimezone(UTC).replace(microsecond=0), usegmt=True)
    parsed = auth._parse_exact_date(raw)
    assert parsed == date_parser.parse(raw)
    assert parsed is not None and parsed.tzinfo is UTC


@pytest.mark.usefixtures("no_lenient_parser")
@pytest.mark.parametrize(
    "raw",
    [
        "2018-12-20T01:23:45.123456+00:00",
        "2018-12-20T01:23:45+00:00",
        "2018-12-20T01:23:45",
        "2018-12-20T01:23:45Z",
        "2018-12-20T10:23:45.5+09:00",
        "2018-12-20T10:23:45-05:30",
        "Thu, 20 Dec 2018 01:23:45 GMT",
        "20181220T012345Z",
    ],
)
def test_the_spec_forms_never_reach_the_lenient_parser(raw: str) -> None:
    assert auth.parse_request_date(raw).tzinfo is not None


@pytest.mark.usefixtures("no_lenient_parser")
@pytest.mark.parametrize(
    "raw",
    [
        "2018-13-20T01:23:45+00:00",  # month 13
        "2018-02-30T01:23:45Z",  # no such day
        "2018-12-20T24:00:00Z",
        "2018-12-20T01:60:45Z",
        "2018-12-20T01:23:45+24:00",  # no such zone
        "Thu, 32 Dec 2018 01:23:45 GMT",
        "Thu, 20 Dec 2018 25:23:45 GMT",
        "20181340T012345Z",
    ],
)
def test_an_impossible_field_in_an_exact_form_is_refused(raw: str) -> None:
    with pytest.raises(ValueError):
        auth.parse_request_date(raw)


def test_other_forms_still_go_to_the_lenient_parser() -> None:
    # Spec 2.3: other forms SHOULD be accepted "with a lenient date parser".
    assert auth._parse_exact_date("20 Dec 2018 01:23:45 +0000") is None
    assert auth.parse_request_date("20 Dec 2018 01:23:45 +0000") == datetime(
        2018, 12, 20, 1, 23, 45, tzinfo=UTC
    )
