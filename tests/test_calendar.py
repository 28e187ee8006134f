"""The business calendar: working days, holidays, send windows, business-day waits and daylight saving time.

The worked examples are the ones in docs/rules.md ("How waits and send windows are computed"):
a Berlin calendar, Monday to Friday, holidays of DE/BE, send window 08:00-18:00.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from outreach import calendar
from outreach.rules import model, timing

pytestmark = pytest.mark.unit

BERLIN = timing.zone("Europe/Berlin")
NEW_YORK = timing.zone("America/New_York")
UTC = dt.UTC
MON_FRI = frozenset(range(5))
EVERY_DAY = frozenset(range(7))


def berlin_calendar(
    workdays: frozenset[int] = MON_FRI,
    window: str | None = "08:00-18:00",
    country: str | None = "DE",
    subdivision: str | None = "BE",
    timezone: str | None = "Europe/Berlin",
) -> model.Calendar:
    return model.Calendar(
        name="default",
        workdays=workdays,
        holiday_country=country,
        holiday_subdivision=subdivision if country else None,
        send_window=timing.parse_window(window) if window else None,
        timezone=timezone,
    )


def business(n: int) -> timing.Duration:
    return timing.Duration(business_days=n)


def plain(text: str) -> timing.Duration:
    return timing.parse_duration(text)


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def local(text: str, tz: dt.tzinfo = BERLIN, fold: int = 0) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=tz, fold=fold)


CAL = berlin_calendar()


# --- the worked examples ------------------------------------------------------------------


def test_two_business_days_after_monday_morning_are_wednesday_at_the_same_time() -> None:
    assert calendar.add_wait(utc("2026-11-23T08:00"), business(2), CAL, BERLIN) == utc("2026-11-25T08:00")


def test_two_business_days_after_friday_afternoon_skip_the_weekend_to_tuesday() -> None:
    assert calendar.add_wait(utc("2026-11-27T15:00"), business(2), CAL, BERLIN) == utc("2026-12-01T15:00")


def test_immediately_after_the_window_closed_on_friday_goes_out_when_it_opens_on_monday() -> None:
    # 17:30Z is 18:30 in Berlin: the 08:00-18:00 window has closed.
    due = calendar.add_wait(utc("2026-11-27T17:30"), timing.Duration(), CAL, BERLIN)
    assert due == utc("2026-11-30T07:00")
    assert due.astimezone(BERLIN) == local("2026-11-30T08:00")


def test_one_business_day_after_christmas_eve_skips_both_christmas_holidays_and_the_weekend() -> None:
    due = calendar.add_wait(local("2026-12-24T16:00"), business(1), CAL, BERLIN)
    assert due.astimezone(BERLIN) == local("2026-12-28T16:00")


def test_a_business_day_keeps_the_local_time_across_the_end_of_daylight_saving_time() -> None:
    # Clocks go back on Sunday 2026-10-25: 09:00 is 07:00Z on Friday and 08:00Z on Monday.
    start = local("2026-10-23T09:00")
    assert start == utc("2026-10-23T07:00")
    assert calendar.add_wait(start, business(1), CAL, BERLIN) == utc("2026-10-26T08:00")


def test_results_are_aware_utc_datetimes() -> None:
    for wait in (timing.Duration(), plain("4h"), business(3)):
        due = calendar.add_wait(local("2026-11-24T10:00"), wait, CAL, BERLIN)
        assert due.tzinfo is UTC
    assert calendar.next_send_time(local("2026-11-24T10:00"), berlin_calendar(window=None), BERLIN).tzinfo is UTC


# --- where business days start counting ----------------------------------------------------


def test_one_business_day_after_friday_evening_is_monday_evening() -> None:
    cal = berlin_calendar(window=None)
    assert calendar.add_wait(local("2026-11-27T17:00"), business(1), cal, BERLIN) == local("2026-11-30T17:00")
    assert calendar.add_wait(local("2026-11-27T17:00"), business(2), cal, BERLIN) == local("2026-12-01T17:00")


def test_a_wait_that_starts_on_a_weekend_counts_whole_working_days_from_monday_00_00() -> None:
    saturday = local("2026-11-28T10:00")
    assert calendar.add_wait(saturday, business(1), berlin_calendar(window=None), BERLIN) == local("2026-12-01T00:00")
    # With the 08:00-18:00 window the mail goes out when Tuesday's window opens.
    assert calendar.add_wait(saturday, business(1), CAL, BERLIN) == local("2026-12-01T08:00")
    # `immediately` from Saturday is Monday's opening.
    assert calendar.add_wait(saturday, timing.Duration(), CAL, BERLIN) == local("2026-11-30T08:00")


def test_a_start_on_saturday_never_comes_due_before_a_start_on_friday_evening() -> None:
    cal = berlin_calendar(window=None)
    friday = calendar.add_wait(local("2026-11-27T23:59"), business(1), cal, BERLIN)
    saturday = calendar.add_wait(local("2026-11-28T00:01"), business(1), cal, BERLIN)
    assert friday == local("2026-11-30T23:59")
    assert friday < saturday


def test_a_start_on_a_holiday_counts_from_the_next_working_day() -> None:
    cal = berlin_calendar(window=None)
    assert calendar.add_wait(local("2026-12-25T09:00"), business(1), cal, BERLIN) == local("2026-12-29T00:00")


# --- send windows ----------------------------------------------------------------------------


def test_a_four_hour_wait_that_ends_after_the_window_waits_for_the_next_working_morning() -> None:
    cal = berlin_calendar(window="09:00-17:00")
    assert calendar.add_wait(local("2026-11-26T14:00"), plain("4h"), cal, BERLIN) == local("2026-11-27T09:00")
    # From Friday the next working morning is Monday's.
    assert calendar.add_wait(local("2026-11-27T14:00"), plain("4h"), cal, BERLIN) == local("2026-11-30T09:00")
    # Within the window it is exact.
    assert calendar.add_wait(local("2026-11-26T09:30"), plain("4h"), cal, BERLIN) == local("2026-11-26T13:30")


def test_a_send_inside_the_window_goes_out_at_that_instant() -> None:
    t = local("2026-11-24T10:17:23.456789")
    assert calendar.next_send_time(t, CAL, BERLIN) == t


def test_a_send_before_the_window_waits_for_it_to_open() -> None:
    assert calendar.next_send_time(local("2026-11-24T06:00"), CAL, BERLIN) == local("2026-11-24T08:00")


def test_the_window_end_is_exclusive() -> None:
    assert calendar.next_send_time(local("2026-11-24T17:59:59"), CAL, BERLIN) == local("2026-11-24T17:59:59")
    assert calendar.next_send_time(local("2026-11-24T18:00"), CAL, BERLIN) == local("2026-11-25T08:00")


def test_a_window_that_ends_at_24_00_runs_to_midnight() -> None:
    cal = berlin_calendar(window="18:00-24:00")
    assert calendar.next_send_time(local("2026-11-27T23:59:59"), cal, BERLIN) == local("2026-11-27T23:59:59")
    assert calendar.next_send_time(local("2026-11-28T00:00"), cal, BERLIN) == local("2026-11-30T18:00")


def test_without_a_window_a_plain_wait_is_exact_on_a_working_day() -> None:
    cal = berlin_calendar(window=None)
    assert calendar.add_wait(local("2026-11-26T03:17"), plain("1 day"), cal, BERLIN) == local("2026-11-27T03:17")
    assert calendar.next_send_time(local("2026-11-24T23:59"), cal, BERLIN) == local("2026-11-24T23:59")


def test_without_a_window_friday_plus_one_day_goes_out_on_monday_at_00_00() -> None:
    # The product note: sequence mail goes out on working days only, windowed or not (issue 18, item 5).
    cal = berlin_calendar(window=None)
    assert calendar.add_wait(local("2026-11-27T03:17"), plain("1 day"), cal, BERLIN) == local("2026-11-30T00:00")
    assert calendar.add_wait(local("2026-11-27T15:00"), plain("2 days"), cal, BERLIN) == local("2026-11-30T00:00")
    assert calendar.add_wait(local("2026-11-28T10:00"), timing.Duration(), cal, BERLIN) == local("2026-11-30T00:00")


def test_without_a_window_mail_due_on_a_holiday_waits_for_the_next_working_day() -> None:
    cal = berlin_calendar(window=None)
    # Thursday 24 December + 1 day is Christmas Day; the 26th is a holiday too, then the weekend.
    assert calendar.add_wait(local("2026-12-24T12:00"), plain("1 day"), cal, BERLIN) == local("2026-12-28T00:00")
    assert calendar.next_send_time(local("2026-12-25T12:00"), cal, BERLIN) == local("2026-12-28T00:00")
    # Without a holiday country, Christmas is a working day.
    assert calendar.next_send_time(local("2026-12-25T12:00"), berlin_calendar(window=None, country=None),
                                   BERLIN) == local("2026-12-25T12:00")  # fmt: skip


def test_a_plain_day_is_24_hours_across_the_end_of_daylight_saving_time() -> None:
    cal = berlin_calendar(window=None)
    due = calendar.add_wait(local("2026-10-23T09:00"), plain("3 days"), cal, BERLIN)
    assert due == local("2026-10-26T08:00")  # 72 hours, one of them given back by the clocks


def test_immediately_without_a_window_is_the_start_itself_on_a_working_day() -> None:
    start = local("2026-11-27T10:00")
    assert calendar.add_wait(start, timing.Duration(), berlin_calendar(window=None), BERLIN) == start


# --- time zones ------------------------------------------------------------------------------


def test_zone_for_prefers_the_recipients_valid_timezone() -> None:
    assert calendar.zone_for("America/New_York", CAL, "UTC") == NEW_YORK


@pytest.mark.parametrize("record_timezone", [None, "", "Mars/Olympus", "Europe", "+01:00", "localtime"])
def test_zone_for_uses_the_calendars_zone_when_the_record_has_no_valid_one(record_timezone: str | None) -> None:
    assert calendar.zone_for(record_timezone, CAL, "UTC") == BERLIN


def test_zone_for_uses_the_settings_zone_when_the_calendar_has_none() -> None:
    cal = berlin_calendar(timezone=None)
    assert calendar.zone_for(None, cal, "Asia/Kolkata") == timing.zone("Asia/Kolkata")
    assert calendar.zone_for("bogus", model.DEFAULT_CALENDAR, "UTC") == timing.zone("UTC")


def test_a_new_york_recipient_gets_mail_in_new_yorks_window_on_a_berlin_calendar() -> None:
    tz = calendar.zone_for("America/New_York", CAL, "UTC")
    # 08:00Z on Monday is 03:00 in New York: wait for 08:00 there (13:00Z), not Berlin's 08:00.
    assert calendar.add_wait(utc("2026-11-23T08:00"), timing.Duration(), CAL, tz) == utc("2026-11-23T13:00")
    # Friday 18:30 in New York is already Saturday in Berlin; business days count on New York's dates.
    friday_evening = local("2026-11-27T18:30", NEW_YORK)
    assert calendar.add_wait(friday_evening, business(1), berlin_calendar(window=None), tz) == local(
        "2026-11-30T18:30", NEW_YORK
    )
    # With the window, Monday 18:30 is too late: Tuesday 08:00 New York time.
    assert calendar.add_wait(friday_evening, business(1), CAL, tz) == local("2026-12-01T08:00", NEW_YORK)


def test_the_calendars_holidays_apply_to_the_recipients_local_dates() -> None:
    # 20:00 on 24 December in New York; the 25th and 26th are DE holidays, then the weekend.
    due = calendar.add_wait(local("2026-12-24T20:00", NEW_YORK), timing.Duration(), CAL, NEW_YORK)
    assert due == local("2026-12-28T08:00", NEW_YORK)


# --- working days and holidays ------------------------------------------------------------------


def test_a_sunday_to_thursday_week_skips_friday_and_saturday() -> None:
    sun_thu = frozenset({6, 0, 1, 2, 3})
    cal = berlin_calendar(workdays=sun_thu, window=None, country=None, timezone="Asia/Dubai")
    tz = timing.zone("Asia/Dubai")
    assert not calendar.is_working_day(dt.date(2026, 11, 27), cal)  # Friday
    assert not calendar.is_working_day(dt.date(2026, 11, 28), cal)  # Saturday
    assert calendar.is_working_day(dt.date(2026, 11, 29), cal)  # Sunday
    thursday = local("2026-11-26T10:00", tz)
    assert calendar.add_wait(thursday, business(1), cal, tz) == local("2026-11-29T10:00", tz)
    assert calendar.add_wait(thursday, business(2), cal, tz) == local("2026-11-30T10:00", tz)


def test_a_calendar_without_a_holiday_country_works_on_public_holidays() -> None:
    cal = berlin_calendar(country=None, window=None)
    assert calendar.is_working_day(dt.date(2026, 12, 25), cal)
    assert calendar.is_working_day(dt.date(2026, 12, 25), model.DEFAULT_CALENDAR)
    assert calendar.add_wait(local("2026-12-24T16:00"), business(1), cal, BERLIN) == local("2026-12-25T16:00")


def test_holidays_follow_the_subdivision() -> None:
    womens_day = dt.date(2027, 3, 8)  # a Monday; a public holiday in Berlin, not in all of Germany
    assert not calendar.is_working_day(womens_day, berlin_calendar())
    assert calendar.is_working_day(womens_day, berlin_calendar(subdivision=None))


def test_long_business_waits_count_every_working_day_and_holiday() -> None:
    cal = berlin_calendar(window=None)

    def day_by_day(start: dt.date, n: int) -> dt.date:
        day = start
        while n:
            day += dt.timedelta(days=1)
            n -= calendar.is_working_day(day, cal)
        return day

    for start in (dt.date(2026, 11, 23), dt.date(2026, 12, 23), dt.date(2027, 3, 5)):
        for n in (1, 9, 10, 11, 30, 250, 1000):
            due = calendar.add_wait(local(f"{start}T12:00"), business(n), cal, BERLIN)
            assert due == local(f"{day_by_day(start, n)}T12:00"), (start, n)


# --- daylight saving time ---------------------------------------------------------------------


def test_a_business_day_due_in_the_skipped_hour_is_due_when_the_clocks_jump() -> None:
    # Clocks go forward on Sunday 2026-03-29 at 02:00 CET to 03:00 CEST; here Sunday is a working day.
    cal = berlin_calendar(workdays=EVERY_DAY, window=None)
    for start in ("2026-03-28T02:00", "2026-03-28T02:30", "2026-03-28T02:59", "2026-03-28T03:00"):
        assert calendar.add_wait(local(start), business(1), cal, BERLIN) == utc("2026-03-29T01:00"), start
    assert calendar.add_wait(local("2026-03-28T03:01"), business(1), cal, BERLIN) == utc("2026-03-29T01:01")


def test_starts_in_the_repeated_hour_keep_their_order() -> None:
    # Clocks go back on Sunday 2026-10-25 at 03:00 CEST to 02:00 CET: 02:00-02:59 happens twice.
    cal = berlin_calendar(workdays=EVERY_DAY, window=None)
    first_pass = local("2026-10-25T02:30", fold=0)
    second_pass = local("2026-10-25T02:10", fold=1)
    # (Aware datetimes in a repeated hour never compare equal across zones: compare in UTC.)
    assert first_pass.astimezone(UTC) == utc("2026-10-25T00:30")
    assert second_pass.astimezone(UTC) == utc("2026-10-25T01:10")
    assert calendar.add_wait(first_pass, business(1), cal, BERLIN) == local("2026-10-26T02:30")
    # The second pass counts as the end of the repeated hour, 03:00, not as 02:10.
    assert calendar.add_wait(second_pass, business(1), cal, BERLIN) == local("2026-10-26T03:00")
    assert calendar.add_wait(local("2026-10-25T03:00"), business(1), cal, BERLIN) == local("2026-10-26T03:00")


def test_a_business_day_due_in_the_repeated_hour_is_its_first_occurrence() -> None:
    cal = berlin_calendar(workdays=EVERY_DAY, window=None)
    assert calendar.add_wait(local("2026-10-24T02:30"), business(1), cal, BERLIN) == utc("2026-10-25T00:30")


def test_a_window_opening_in_the_skipped_hour_opens_when_the_clocks_jump() -> None:
    cal = berlin_calendar(workdays=EVERY_DAY, window="02:30-18:00")
    assert calendar.next_send_time(utc("2026-03-29T00:00"), cal, BERLIN) == local("2026-03-29T03:00")


def test_a_window_opening_in_the_repeated_hour_opens_at_its_first_occurrence() -> None:
    cal = berlin_calendar(workdays=EVERY_DAY, window="02:30-18:00")
    assert calendar.next_send_time(utc("2026-10-24T23:00"), cal, BERLIN) == utc("2026-10-25T00:30")


# --- what the calendar refuses --------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda t: calendar.add_wait(t, business(1), CAL, BERLIN),
        lambda t: calendar.add_wait(t, plain("4h"), CAL, BERLIN),
        lambda t: calendar.add_wait(t, timing.Duration(), CAL, BERLIN),
        lambda t: calendar.next_send_time(t, CAL, BERLIN),
        lambda t: calendar.next_send_time(t, berlin_calendar(window=None), BERLIN),
    ],
    ids=["business", "plain", "immediately", "next_send_time", "next_send_time-no-window"],
)
def test_naive_datetimes_are_refused(call: Callable[[dt.datetime], dt.datetime]) -> None:
    with pytest.raises(ValueError, match="no time zone"):
        call(dt.datetime(2026, 11, 23, 8, 0))


def test_a_calendar_without_workdays_is_refused() -> None:
    cal = berlin_calendar(workdays=frozenset())
    with pytest.raises(ValueError, match="no workdays"):
        calendar.add_wait(utc("2026-11-23T08:00"), business(1), cal, BERLIN)
    with pytest.raises(ValueError, match="no working day"):
        calendar.next_send_time(utc("2026-11-23T08:00"), cal, BERLIN)


# --- properties ------------------------------------------------------------------------------

ZONES = ("Europe/Berlin", "America/New_York", "Asia/Kolkata", "UTC")
PROPERTIES = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def windows(draw: st.DrawFn) -> timing.Window:
    start = draw(st.integers(0, 24 * 60 - 1))
    end = draw(st.integers(start + 1, 24 * 60))
    return timing.Window(dt.time(*divmod(start, 60)), end)


@st.composite
def calendars(draw: st.DrawFn) -> model.Calendar:
    country, subdivision = draw(st.sampled_from([(None, None), ("DE", "BE")]))
    return model.Calendar(
        name="random",
        workdays=draw(st.frozensets(st.integers(0, 6), min_size=1)),
        holiday_country=country,
        holiday_subdivision=subdivision,
        send_window=draw(st.none() | windows()),
        timezone=draw(st.sampled_from(ZONES)),
    )


starts = st.datetimes(
    min_value=dt.datetime(2020, 1, 1),
    max_value=dt.datetime(2030, 12, 31),
    timezones=st.sampled_from([timing.zone(z) for z in ZONES]),
)
recipient_zones = st.none() | st.sampled_from(ZONES)
business_waits = st.integers(0, 30).map(business)
plain_waits = st.integers(0, 30 * 86400).map(lambda s: timing.Duration(seconds=s))
# Both close pairs (same day, same hour) and far ones.
gaps = st.one_of(
    st.timedeltas(dt.timedelta(0), dt.timedelta(hours=3)), st.timedeltas(dt.timedelta(0), dt.timedelta(days=10))
)


def inside_window(t: dt.datetime, window: timing.Window) -> bool:
    seconds = t.hour * 3600 + t.minute * 60 + t.second + t.microsecond / 1e6
    return t.time() >= window.start and seconds < window.end_minutes * 60


@PROPERTIES
@given(starts, business_waits, calendars(), recipient_zones)
def test_a_business_wait_lands_on_a_working_day_inside_the_window_and_not_before_the_start(
    start: dt.datetime, wait: timing.Duration, cal: model.Calendar, recipient: str | None
) -> None:
    start = start.astimezone(UTC)  # so + gap is elapsed time, and == works for skipped or repeated local times
    tz = calendar.zone_for(recipient, cal, "UTC")
    due = calendar.add_wait(start, wait, cal, tz)
    assert due.tzinfo is UTC
    assert due >= start
    seen = due.astimezone(tz)
    assert calendar.is_working_day(seen.date(), cal)
    if cal.send_window is not None:
        assert inside_window(seen, cal.send_window)
    elif not wait.is_business and calendar.is_working_day(start.astimezone(tz).date(), cal):
        assert due == start


@PROPERTIES
@given(starts, gaps, business_waits, calendars(), recipient_zones)
# Friday 23:59 and Saturday 00:01 (a start on a weekend); 02:30 CEST and 02:10 CET (the repeated hour).
@example(local("2026-11-27T23:59"), dt.timedelta(minutes=2), business(1), berlin_calendar(window=None), None)
@example(local("2026-10-25T02:30"), dt.timedelta(minutes=40), business(1), berlin_calendar(EVERY_DAY, None), None)
@example(local("2026-03-28T02:59"), dt.timedelta(minutes=1), business(1), berlin_calendar(EVERY_DAY, None), None)
def test_a_later_start_never_comes_due_earlier_with_business_waits(
    start: dt.datetime, gap: dt.timedelta, wait: timing.Duration, cal: model.Calendar, recipient: str | None
) -> None:
    start = start.astimezone(UTC)  # so + gap is elapsed time, and == works for skipped or repeated local times
    tz = calendar.zone_for(recipient, cal, "UTC")
    assert calendar.add_wait(start, wait, cal, tz) <= calendar.add_wait(start + gap, wait, cal, tz)


@PROPERTIES
@given(starts, plain_waits, calendars(), recipient_zones)
def test_a_plain_wait_is_at_least_its_length_and_lands_inside_the_window(
    start: dt.datetime, wait: timing.Duration, cal: model.Calendar, recipient: str | None
) -> None:
    start = start.astimezone(UTC)  # so + gap is elapsed time, and == works for skipped or repeated local times
    tz = calendar.zone_for(recipient, cal, "UTC")
    due = calendar.add_wait(start, wait, cal, tz)
    over = start + dt.timedelta(seconds=wait.seconds)
    assert due >= over
    assert calendar.is_working_day(due.astimezone(tz).date(), cal)
    # Sending is a fixed point: a due time is already a send time.
    assert calendar.next_send_time(due, cal, tz) == due
    if cal.send_window is None:
        # Exact on a working day; else the start of the next one.
        ends_on_working_day = calendar.is_working_day(over.astimezone(tz).date(), cal)
        assert due == over if ends_on_working_day else due.astimezone(tz).time() <= dt.time(1)


@PROPERTIES
@given(starts, gaps, plain_waits, calendars(), recipient_zones)
def test_a_later_start_never_comes_due_earlier_with_plain_waits(
    start: dt.datetime, gap: dt.timedelta, wait: timing.Duration, cal: model.Calendar, recipient: str | None
) -> None:
    start = start.astimezone(UTC)  # so + gap is elapsed time, and == works for skipped or repeated local times
    tz = calendar.zone_for(recipient, cal, "UTC")
    assert calendar.add_wait(start, wait, cal, tz) <= calendar.add_wait(start + gap, wait, cal, tz)


@PROPERTIES
@given(starts, st.integers(1, 30), calendars(), recipient_zones)
def test_business_days_keep_the_local_time_of_a_start_on_a_working_day(
    start: dt.datetime, n: int, cal: model.Calendar, recipient: str | None
) -> None:
    cal = model.Calendar(cal.name, cal.workdays, cal.holiday_country, cal.holiday_subdivision, None, cal.timezone)
    start = start.astimezone(UTC)  # so + gap is elapsed time, and == works for skipped or repeated local times
    tz = calendar.zone_for(recipient, cal, "UTC")
    seen = start.astimezone(tz)
    # Berlin and New York change their clocks between 01:00 and 04:00 local time.
    assume(calendar.is_working_day(seen.date(), cal) and not 1 <= seen.hour < 4)
    due = calendar.add_wait(start, business(n), cal, tz).astimezone(tz)
    assert due.time() == seen.time()
    assert calendar.is_working_day(due.date(), cal)
    days_between = (seen.date() + dt.timedelta(days=i) for i in range(1, (due.date() - seen.date()).days + 1))
    assert sum(calendar.is_working_day(day, cal) for day in days_between) == n
