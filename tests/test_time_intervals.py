"""Maintenance windows (``guards/windows.py``, ``ruleset/time_intervals.py``): Alertmanager's
``time_intervals`` read as Alertmanager reads them and held as it holds them.

- A table of instants worked out by hand (DST changes in both directions and in 30-minute
  zones, month ends and leap years, a year's end in zones either side of UTC), each held
  or not by an interval as Alertmanager's ``ContainsTime`` says.
- Against Debian's ``amtool`` 0.25: each entry of a corpus is accepted by ``check-config``
  and by the rules alike, but for the few refused here on purpose (``STRICTER``).
- Against Debian's Alertmanager 0.25 itself: one route per interval (generated around now
  in nine zones), each muted by its interval; the routes that deliver a notification are
  those whose interval does not hold now, as the guard says.
- End to end: a service inside a mute window refuses and pages, outside an active window
  refuses and pages, inside it acts; a claim resumed after a crash into a change freeze is
  refused before anything is written.
"""

from __future__ import annotations

import asyncio
import calendar
import json
import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from remediator.actions.registry import default_registry
from remediator.cli.main import main
from remediator.core.errors import RuleFileError
from remediator.core.fingerprint import fingerprint
from remediator.core.model import StopReason
from remediator.guards import windows
from remediator.guards.windows import TimeInterval
from remediator.ruleset.load import load_rules
from remediator.ruleset.strict_yaml import parse
from remediator.ruleset.time_intervals import TimeIntervalSpec
from tests.support.alertmanager import start_alertmanager
from tests.support.kube_api import KubeApiServer
from tests.support.kubeconfig import write_kubeconfig
from tests.support.payloads import webhook_alert, webhook_payload
from tests.support.process import crash_after_claim, start_remediator
from tests.support.rule_texts import POLICY
from tests.support.service import paging_example_rules, serve, settings_for
from tests.support.sinks import WebhookStub
from tests.support.waiting import eventually

AMTOOL = shutil.which("amtool")
NS = "llm-research"


def interval(items: str, name: str = "window") -> TimeInterval:
    """The named interval whose items are the YAML flow list ``items``, as a rule file
    gives it."""
    document = parse(f"time_intervals: {items}\n".encode())
    return TimeIntervalSpec.model_validate({"name": name, **document}).compiled()


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


BERLIN_2_TO_3 = "[{times: [{start_time: '02:00', end_time: '03:00'}], location: Europe/Berlin}]"
NEW_YORK_1_TO_2 = (
    "[{times: [{start_time: '01:00', end_time: '02:00'}], location: America/New_York}]"
)
NEW_YORK_SUNDAY = "[{weekdays: [sunday], location: America/New_York}]"
LAST_DAY = "[{days_of_month: ['-1']}]"
LORD_HOWE = "[{times: [{start_time: '01:30', end_time: '02:00'}], location: Australia/Lord_Howe}]"
KOLKATA = "[{times: [{start_time: '09:00', end_time: '09:30'}], location: Asia/Kolkata}]"
OFFICE = "[{weekdays: ['monday:friday'], times: [{start_time: '09:00', end_time: '17:00'}]}]"
NIGHTS_AND_WEEKENDS = (
    "[{weekdays: [saturday, sunday]}, {times: [{start_time: '22:00', end_time: '24:00'}]}]"
)

# (interval's items, instant in UTC, held?, why), each worked out by hand.
INSTANTS = [
    # Europe/Berlin springs forward on 2026-03-29 at 01:00 UTC (02:00 CET becomes 03:00 CEST).
    (BERLIN_2_TO_3, "2026-03-28T01:30", True, "02:30 CET the day before"),
    (BERLIN_2_TO_3, "2026-03-29T00:59:59", False, "01:59:59 CET, the last second before"),
    (BERLIN_2_TO_3, "2026-03-29T01:00", False, "03:00 CEST: the hour 02:00 never happens"),
    # ... and falls back on 2026-10-25 at 01:00 UTC (03:00 CEST becomes 02:00 CET).
    (BERLIN_2_TO_3, "2026-10-24T23:59", False, "01:59 CEST"),
    (BERLIN_2_TO_3, "2026-10-25T00:30", True, "02:30 CEST, the first time"),
    (BERLIN_2_TO_3, "2026-10-25T01:30", True, "02:30 CET, the second time"),
    (BERLIN_2_TO_3, "2026-10-25T02:00", False, "03:00 CET"),
    # America/New_York falls back on 2026-11-01 at 06:00 UTC (02:00 EDT becomes 01:00 EST).
    (NEW_YORK_1_TO_2, "2026-11-01T05:30", True, "01:30 EDT"),
    (NEW_YORK_1_TO_2, "2026-11-01T06:30", True, "01:30 EST, the hour again"),
    (NEW_YORK_1_TO_2, "2026-11-01T07:00", False, "02:00 EST"),
    # The Sunday New York springs forward (2026-03-08) has 23 hours.
    (NEW_YORK_SUNDAY, "2026-03-08T04:59", False, "Saturday 23:59 EST"),
    (NEW_YORK_SUNDAY, "2026-03-08T05:00", True, "Sunday 00:00 EST"),
    (NEW_YORK_SUNDAY, "2026-03-09T03:59", True, "Sunday 23:59 EDT"),
    (NEW_YORK_SUNDAY, "2026-03-09T04:00", False, "Monday 00:00 EDT"),
    # Lord Howe Island falls back 30 minutes on 2026-04-05 at 15:00 UTC (02:00 becomes 01:30).
    (LORD_HOWE, "2026-04-04T14:45", True, "01:45 at +11:00"),
    (LORD_HOWE, "2026-04-04T15:15", True, "01:45 at +10:30, again"),
    (LORD_HOWE, "2026-04-04T15:30", False, "02:00 at +10:30"),
    (KOLKATA, "2026-12-02T03:30", True, "09:00 at +05:30"),
    (KOLKATA, "2026-12-02T03:59:59", True, "09:29:59 at +05:30"),
    (KOLKATA, "2026-12-02T04:00", False, "09:30, the end excluded"),
    ("[{times: [{start_time: '00:00', end_time: '00:15'}], location: Pacific/Chatham}]",
     "2026-12-02T10:15", True, "00:00 on 3 December at +13:45"),
    # Month ends: -1 is the last day, whatever the month's length.
    (LAST_DAY, "2026-02-28T12:00", True, "February 2026 has 28 days"),
    (LAST_DAY, "2028-02-28T12:00", False, "February 2028 has 29"),
    (LAST_DAY, "2028-02-29T12:00", True, "the leap day"),
    (LAST_DAY, "2026-04-30T23:59:59", True, "April's last second"),
    (LAST_DAY, "2026-05-01T00:00", False, "May's first"),
    ("[{days_of_month: ['-1'], location: Europe/Berlin}]", "2026-03-31T10:00", True,
     "31 March in Berlin, in the month it springs forward"),
    ("[{days_of_month: ['-1'], location: Europe/Berlin}]", "2026-03-30T10:00", False,
     "30 March: Alertmanager 0.25 counted that month's 743 hours as 30 days"),
    ("[{days_of_month: ['-1'], location: Pacific/Kiritimati}]", "2026-04-30T09:59", True,
     "23:59 on 30 April at +14:00"),
    ("[{days_of_month: ['-1'], location: Pacific/Kiritimati}]", "2026-04-30T10:00", False,
     "00:00 on 1 May at +14:00, while UTC is still in April"),
    ("[{days_of_month: ['31']}]", "2026-04-30T12:00", False, "April has no 31st"),
    ("[{days_of_month: ['31']}]", "2026-05-31T12:00", True, "May's 31st"),
    ("[{days_of_month: ['29:31']}]", "2026-02-28T12:00", False, "starts after February ends"),
    ("[{days_of_month: ['25:31']}]", "2026-02-28T12:00", True, "clamped to the 28th"),
    ("[{days_of_month: ['-3:-1']}]", "2026-02-26T12:00", True, "the third-last of 28"),
    ("[{days_of_month: ['-3:-1']}]", "2026-02-25T12:00", False, "the fourth-last"),
    ("[{days_of_month: ['-31']}]", "2026-02-01T12:00", False, "a 28-day month has no -31"),
    ("[{days_of_month: ['-31']}]", "2026-03-01T12:00", True, "-31 of 31 days is the 1st"),
    ("[{days_of_month: ['1:-1']}]", "2026-02-14T12:00", True, "the whole month"),
    ("[{days_of_month: ['+5', '05']}]", "2026-02-05T12:00", True, "numbers as Go reads them"),
    # A year's and a month's end either side of UTC.
    ("[{years: ['2026']}]", "2026-12-31T23:30", True, "UTC"),
    ("[{years: ['2026'], location: Asia/Tokyo}]", "2026-12-31T23:30", False, "2027 in Tokyo"),
    ("[{years: ['2026'], location: America/Los_Angeles}]", "2027-01-01T03:00", True,
     "still 2026 in Los Angeles"),
    ("[{years: ['2020:2025', '2027:9999']}]", "2026-06-01T00:00", False, "between ranges"),
    ("[{months: [December], location: Asia/Tokyo}]", "2026-11-30T15:00", True,
     "1 December in Tokyo"),
    ("[{months: ['may:JULY', '12']}]", "2026-07-31T23:59", True, "names in any case"),
    ("[{months: ['may:july']}]", "2026-08-01T00:00", False, "August"),
    # Times: the start included, the end excluded, 24:00 the day's end.
    (OFFICE, "2026-12-02T09:00", True, "Wednesday 09:00"),
    (OFFICE, "2026-12-02T08:59:59", False, "before"),
    (OFFICE, "2026-12-02T16:59:59", True, "the last second"),
    (OFFICE, "2026-12-02T17:00", False, "the end excluded"),
    (OFFICE, "2026-12-05T12:00", False, "Saturday: every field must hold"),
    ("[{times: [{start_time: '23:00', end_time: '24:00'}]}]", "2026-12-02T23:59:59.999", True,
     "the day's last instant"),
    ("[{times: [{start_time: '23:00', end_time: '24:00'}]}]", "2026-12-03T00:00", False,
     "the next day"),
    # Items: any one holding is enough.
    (NIGHTS_AND_WEEKENDS, "2026-12-02T22:30", True, "Wednesday night: the second item"),
    (NIGHTS_AND_WEEKENDS, "2026-12-02T12:00", False, "Wednesday noon: neither"),
    (NIGHTS_AND_WEEKENDS, "2026-12-05T12:00", True, "Saturday: the first item"),
    ("[{weekdays: ['sunday:saturday']}]", "2026-12-06T12:00", True, "every day"),
    ("[{weekdays: ['Saturday', 'SUNDAY']}]", "2026-12-06T12:00", True, "Sunday"),
    ("[{}]", "2026-12-02T12:00", True, "an item with no fields holds always"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("items", "at", "held", "why"), INSTANTS, ids=[f"{i[1]} {i[3]}" for i in INSTANTS]
)
def test_an_instant_is_in_an_interval_as_alertmanager_holds_it(
    items: str, at: str, held: bool, why: str
) -> None:
    assert interval(items).contains(utc(at)) is held, why


# --- what the rule files take: as amtool 0.25 does, but for STRICTER ----------------------

ACCEPTED = [
    "{weekdays: ['monday:friday']}", "{weekdays: [Monday]}", "{weekdays: ['sunday:saturday']}",
    "{days_of_month: ['1:5', '-3:-1']}", "{days_of_month: ['5:-1']}", "{days_of_month: ['+5']}",
    "{days_of_month: ['05']}", "{days_of_month: ['-31:-29']}", "{months: ['May:July']}",
    "{months: ['1:12']}", "{months: [december]}", "{years: ['2020:2030']}",
    "{years: ['+2026']}", "{times: [{start_time: '00:00', end_time: '24:00'}]}",
    "{times: [{start_time: '09:00', end_time: '09:01'}]}", "{location: Europe/Berlin}",
    "{location: EST}", "{location: UTC}", "{location: US/Pacific}", "{location: ''}",
    "{location: Etc/GMT+5}", "{}",
]  # fmt: skip
REFUSED = [
    "{weekdays: ['monday:sunday']}", "{weekdays: [mon]}", "{weekdays: ['1']}",
    "{weekdays: ['monday:tuesday:friday']}", "{days_of_month: ['-1:5']}",
    "{days_of_month: ['0']}", "{days_of_month: ['32']}", "{days_of_month: ['-32']}",
    "{days_of_month: ['10:5']}", "{days_of_month: ['-1:-3']}", "{days_of_month: [' 5']}",
    "{days_of_month: ['5 ']}", "{days_of_month: ['\u0665']}", "{months: ['July:May']}",
    "{months: [' 5']}", "{months: [jan]}", "{years: ['2030:2020']}",
    "{years: ['99999999999999999999']}", "{times: [{start_time: '9:00', end_time: '10:00'}]}",
    "{times: [{start_time: '10:00', end_time: '10:00'}]}",
    "{times: [{start_time: '10:00', end_time: '09:00'}]}",
    "{times: [{start_time: '24:01', end_time: '24:00'}]}",
    "{times: [{start_time: '00:00', end_time: '25:00'}]}",
    "{times: [{start_time: '00:00'}]}", "{times: [{start_time: '00:00', end_time: '01:60'}]}",
    "{location: utc}", "{location: Mars/Olympus}", "{location: ../../etc/passwd}",
    "{location: /etc/localtime}", "{location: 'Europe/Berlin '}", "{time_zone: UTC}",
    "{weekday: [monday]}",
]  # fmt: skip
STRICTER = [
    "{months: ['13']}", "{months: ['0']}", "{years: ['-5']}", "{years: ['0']}",
    "{weekdays: []}", "{times: []}", "{location: Local}",
]  # fmt: skip
"""Taken by Alertmanager 0.25 and refused here: each is a window that never holds (month 13,
year -5, an empty list) or holds wherever the process happens to run (``Local``)."""


def _amtool_accepts(item: str, directory: Path) -> bool:
    config = directory / "alertmanager.yml"
    config.write_text(
        "route: {receiver: r, routes: [{receiver: r, mute_time_intervals: [w]}]}\n"
        "receivers: [{name: r}]\n"
        f"time_intervals: [{{name: w, time_intervals: [{item}]}}]\n",
        encoding="utf-8",
    )
    assert AMTOOL is not None
    done = subprocess.run(
        [AMTOOL, "check-config", str(config)], capture_output=True, text=True, timeout=30
    )
    return done.returncode == 0


def _we_accept(item: str) -> bool:
    try:
        interval(f"[{item}]")
    except ValidationError:
        return False
    return True


def test_the_rule_files_take_what_amtool_takes_but_for_windows_that_never_hold(
    tmp_path: Path,
) -> None:
    corpus = ACCEPTED + REFUSED + STRICTER
    directories = []
    for i in range(len(corpus)):
        directories.append(tmp_path / str(i))
        directories[-1].mkdir()
    with ThreadPoolExecutor(8) as pool:
        amtool = list(pool.map(_amtool_accepts, corpus, directories))
    ours = [_we_accept(item) for item in corpus]
    expected = [True] * len(ACCEPTED) + [False] * len(REFUSED) + [True] * len(STRICTER)
    assert dict(zip(corpus, amtool, strict=True)) == dict(zip(corpus, expected, strict=True))
    ours_expected = [True] * len(ACCEPTED) + [False] * (len(REFUSED) + len(STRICTER))
    assert dict(zip(corpus, ours, strict=True)) == dict(zip(corpus, ours_expected, strict=True))


def rules(tmp_path: Path, intervals: str, rule_keys: str = "", policy_keys: str = "") -> Path:
    directory = tmp_path / "rules"
    directory.mkdir(exist_ok=True)
    policy = f"policy:\n  namespaces: [{NS}]\n{policy_keys}"
    (directory / "00-policy.yaml").write_text(policy + POLICY)
    (directory / "10-rules.yaml").write_text(
        (f"time_intervals:\n{intervals}" if intervals else "") + "rules:\n"
        "  - name: cpu\n"
        "    matchers: ['alertname=\"HighCPUUsage\"']\n"
        "    severity: SEV-3\n"
        "    action: {kind: scale_out, params: {step: 2, max_replicas: 8}}\n"
        "    target: {kind: Deployment, namespace: '{namespace}', name: '{deployment}'}\n"
        f"{rule_keys}"
        "  - {name: rest, matchers: [], severity: SEV-3}\n"
    )
    return directory


FREEZE = "  - name: freeze\n    time_intervals: [{weekdays: ['sunday:saturday']}]\n"
NEVER = "  - name: never\n    time_intervals: [{years: ['2020']}]\n"


def load_error(directory: Path) -> str:
    with pytest.raises(RuleFileError) as raised:
        load_rules(directory, default_registry())
    return str(raised.value)


def test_a_rule_file_names_what_is_wrong_with_an_interval_and_where(tmp_path: Path) -> None:
    bad = (
        "  - name: office\n"
        "    time_intervals:\n"
        "      - times: [{start_time: 10:00, end_time: '17:00'}]\n"
    )
    assert load_error(rules(tmp_path, bad)) == (
        '10-rules.yaml: time interval "office": field "time_intervals[0].times[0].start_time"'
        " is the number 600: quote a time of day ('17:00'), as YAML 1.1 reads some unquoted"
        " ones as base-60 numbers."
    )


def test_an_interval_a_rule_names_must_be_declared_once(tmp_path: Path) -> None:
    unknown = rules(tmp_path, FREEZE, "    mute_time_intervals: [freeze, frieze]\n")
    assert load_error(unknown) == (
        '10-rules.yaml: rule "cpu": field "mute_time_intervals[1]" names undefined time'
        ' interval "frieze" (defined: freeze).'
    )
    twice = rules(tmp_path, FREEZE + FREEZE)
    assert load_error(twice) == (
        '10-rules.yaml: time interval "freeze" is already declared in 10-rules.yaml.'
    )
    policy = rules(tmp_path, FREEZE, policy_keys="  mute_time_intervals: [holidays]\n")
    assert load_error(policy) == (
        '00-policy.yaml: policy: field "mute_time_intervals[0]" names undefined time'
        ' interval "holidays" (defined: freeze).'
    )


def test_a_rule_without_intervals_hashes_as_before_they_existed(tmp_path: Path) -> None:
    plain = load_rules(rules(tmp_path, ""), default_registry()).rule("cpu")
    named = load_rules(
        rules(tmp_path, FREEZE, "    active_time_intervals: [freeze]\n"), default_registry()
    ).rule("cpu")
    frozen = load_rules(
        rules(tmp_path, FREEZE, policy_keys="  mute_time_intervals: [freeze]\n"),
        default_registry(),
    ).rule("cpu")
    assert plain is not None and named is not None and frozen is not None
    assert plain.digest == frozen.digest != named.digest
    assert [i.name for i in frozen.mute_time_intervals] == ["freeze"]


def test_the_guard_names_the_window_and_the_wall_clock_it_read() -> None:
    freeze = interval("[{weekdays: [wednesday], location: Europe/Berlin}]", "change-freeze")
    never = interval("[{years: ['2020']}]", "old")
    at = utc("2026-12-02T22:30")  # 23:30 in Berlin
    muted = windows.decide([never, freeze], [], at)
    assert muted.reason is StopReason.MUTED
    assert muted.sentence == (
        "Mute time interval 'change-freeze' holds Wednesday 2026-12-02 23:30 Europe/Berlin; no"
        " action is taken in it, so a human is paged as usual."
    )
    outside = windows.decide([never], [never], at)
    assert outside.reason is StopReason.OUTSIDE_ACTIVE_TIME
    assert "active time intervals ('old')" in outside.sentence
    assert windows.decide([never], [freeze], at).allowed
    assert windows.decide([], [], at).allowed


# --- against a real Alertmanager: what it mutes now is what the guard holds now -----------

ZONES = [
    "UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe",
    "Pacific/Chatham", "Pacific/Kiritimati", "America/St_Johns", "Pacific/Pago_Pago",
]  # fmt: skip
DAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
MONTHS = [name.lower() for name in calendar.month_name[1:]]


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def items_around(now: datetime) -> Iterator[dict[str, Any]]:
    """Items whose every bound is minutes or days from ``now``, in each zone of ``ZONES``,
    some holding now and some not."""
    for zone in ZONES:
        local = now.astimezone(ZoneInfo(zone))
        minute, day = local.hour * 60 + local.minute, local.day
        days = calendar.monthrange(local.year, local.month)[1]
        weekday = local.isoweekday() % 7
        where = {"location": zone}
        if 10 <= minute <= 1430:
            yield {"times": [{"start_time": _hhmm(minute - 10), "end_time": _hhmm(minute + 10)}],
                   **where}  # fmt: skip
        if minute >= 30:
            yield {"times": [{"start_time": "00:00", "end_time": _hhmm(minute - 10)}], **where}
        if minute <= 1410:
            yield {"times": [{"start_time": _hhmm(minute + 10), "end_time": "24:00"}], **where}
        yield {"weekdays": [DAYS[weekday].upper()], **where}
        yield {"weekdays": [DAYS[(weekday + 1) % 7], DAYS[(weekday + 6) % 7]], **where}
        yield {"days_of_month": [str(day)], **where}
        yield {"days_of_month": [str(day - days - 1)], **where}  # today, counted from the end
        yield {"days_of_month": [f"{day - days - 1}:-1"], **where}
        if day > 1:
            yield {"days_of_month": [f"1:{day - 1}"], **where}
        if day < days:
            yield {"days_of_month": [f"{day - days}:-1"], **where}  # from tomorrow on
        yield {"months": [MONTHS[local.month - 1].capitalize()], **where}
        yield {"months": [str(m) for m in range(1, 13) if m != local.month], **where}
        yield {"years": [f"{local.year}:{local.year + 1}"], **where}
        yield {"years": [str(local.year - 1)], **where}
        yield {"weekdays": [DAYS[weekday]], "days_of_month": [str(day)],
               "months": [str(local.month)], "years": [str(local.year)], **where}  # fmt: skip


async def test_what_a_real_alertmanager_mutes_now_is_what_the_guard_holds_now(
    tmp_path: Path,
) -> None:
    posted = datetime.now(UTC)
    spread = timedelta(seconds=90)  # Alertmanager flushes within seconds of the post

    def held(items: dict[str, Any], at: datetime) -> bool:
        return interval(f"[{json.dumps(items)}]").contains(at)

    cases = [
        items
        for items in items_around(posted)
        if held(items, posted - spread) == held(items, posted + spread)  # no bound near now
    ]
    assert len(cases) >= 100, "the generator must give a wide table whatever the hour"

    def configure(config: dict[str, Any]) -> None:
        config["route"]["routes"] = [
            {"receiver": f"r{i}", "matchers": [], "continue": True,
             "mute_time_intervals": [f"t{i}"]}
            for i in range(len(cases))
        ]  # fmt: skip
        config["receivers"] += [
            {"name": f"r{i}", "webhook_configs": [{"url": f"{hook.url}/r{i}"}]}
            for i in range(len(cases))
        ]
        config["time_intervals"] = [
            {"name": f"t{i}", "time_intervals": [items]} for i, items in enumerate(cases)
        ]

    async with WebhookStub() as hook:
        am = await start_alertmanager(tmp_path / "am", f"{hook.url}/root",
                                      credentials_file=None, edit=configure)  # fmt: skip
        try:
            await am.post_alerts([{"labels": {"alertname": "Probe"}}])
            expected = {f"/r{i}" for i, items in enumerate(cases) if not held(items, posted)}
            await eventually(
                lambda: expected <= {r.path for r in hook.received}, "the unmuted routes' posts"
            )
            await asyncio.sleep(3)  # a muted route that posted anyway would have by now
            delivered = {r.path for r in hook.received} - {"/root"}
        finally:
            await am.stop()
    described = {f"/r{i}": json.dumps(items) for i, items in enumerate(cases)}
    assert sorted(described[p] for p in delivered) == sorted(described[p] for p in expected)


# --- end to end: the service in and out of its windows -----------------------------------

OPTED_IN = {"remediator.io/allow": "scale_out,recycle_pod"}
INTERVALS = """time_intervals:
  - name: every-day
    time_intervals:
      - {weekdays: ['sunday:saturday'], location: Europe/Berlin}
  - name: long-ago
    time_intervals:
      - years: ['2020']
"""


def windowed_rules(tmp_path: Path, hook: WebhookStub) -> Path:
    """The example rules: CPU muted every day, memory active only in 2020, a single pod's
    memory active every day."""

    def rule(name: str, keys: str) -> dict[str, str]:
        marker = f"  - name: {name}\n"
        return {marker: f"{marker}    {keys}\n"}

    return paging_example_rules(
        tmp_path / "rules",
        hook.url,
        **{"\nrules:\n": f"\n{INTERVALS}rules:\n"},
        **rule("cpu-above-85-percent", "mute_time_intervals: [every-day]"),
        **rule("memory-above-90-percent", "active_time_intervals: [long-ago]"),
        **rule("memory-above-90-percent-on-a-pod", "active_time_intervals: [every-day]"),
    )


def alert(name: str, **labels: str) -> dict[str, str]:
    return {"alertname": name, "namespace": NS, **labels}


async def test_the_service_acts_only_where_its_windows_let_it_and_pages_the_rest(
    tmp_path: Path,
) -> None:
    async with KubeApiServer(seed=19) as kube, WebhookStub() as hook:
        for name in ("api", "web"):
            kube.add_deployment(NS, name, replicas=3, annotations=OPTED_IN)
        pod = kube.pods(NS, {"app": "web"})[0]["metadata"]["name"]
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube.url, kube.token or "")
        rules_dir = windowed_rules(tmp_path, hook)
        kube.bind_rbac_of(rules_dir)
        settings = settings_for(tmp_path, kubeconfig=kubeconfig, rules_dir=rules_dir)
        async with serve(settings) as service:

            async def fire(labels: dict[str, str]) -> list[tuple[str, str | None]]:
                status, _ = await service.post(webhook_payload(webhook_alert(labels=labels)))
                assert status == 200
                await service.settle()
                decisions = await service.decisions(fingerprint=fingerprint(labels))
                return [(d["step"], d["reason"]) for d in decisions][2:]

            muted = await fire(alert("HighCPUUsage", deployment="api"))
            assert muted == [("refused", "muted"), ("escalated", "muted")]
            outside = await fire(alert("HighMemoryUsage", deployment="web"))
            assert outside == [("refused", "outside_active_time"),
                               ("escalated", "outside_active_time")]  # fmt: skip
            inside = await fire(alert("HighMemoryUsage", deployment="web", pod=pod))
            assert "acted" in [step for step, _ in inside]
            assert await service.metric("remediator_guard_refusals_total", {"reason": "muted"}) == 1
            await eventually(lambda: len(hook.received) >= 2, "the two pages")
        assert kube.deployment(NS, "api")["spec"]["replicas"] == 3
        assert kube.deployment(NS, "web")["spec"]["replicas"] == 3
        paged = [json.loads(r.body)["details"]["alert"]["labels"] for r in hook.received]
        assert alert("HighCPUUsage", deployment="api") in paged
        assert alert("HighMemoryUsage", deployment="web") in paged


async def test_a_claim_resumed_after_a_crash_into_a_change_freeze_is_not_run(
    tmp_path: Path,
) -> None:
    """The service dies right after claiming a scale (``after_claim``); a change freeze is
    declared in the policy meanwhile (the rule itself, and its digest, unchanged); the
    restarted service resumes the claim and refuses it, muted, before any write."""
    async with KubeApiServer(seed=20) as kube, WebhookStub() as hook:
        kube.add_deployment(NS, "api", replicas=3, annotations=OPTED_IN)
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube.url, kube.token or "")
        rules_dir = paging_example_rules(tmp_path / "rules", hook.url)
        kube.bind_rbac_of(rules_dir)
        flags = ("--kubeconfig", str(kubeconfig))
        labels = alert("HighCPUUsage", deployment="api")
        payload = json.dumps(webhook_payload(webhook_alert(labels=labels))).encode()
        await crash_after_claim(tmp_path, rules=rules_dir, extra_args=flags, payload=payload)
        policy = rules_dir / "00-policy.yaml"
        policy.write_text(
            policy.read_text().replace("policy:\n", "policy:\n  mute_time_intervals: [freeze]\n")
            + "time_intervals:\n"
            + FREEZE
        )
        service = await start_remediator(tmp_path, rules=rules_dir, extra_args=flags)
        try:

            async def refused() -> bool:
                return "refused" in [d["step"] for d in await service.decisions()]

            await eventually(refused, "the resumed claim refused")
            await eventually(lambda: len(hook.received) >= 1, "the page")
            decisions = await service.decisions()
        finally:
            assert await service.stop() == 0
    [refusal] = [d for d in decisions if d["step"] == "refused"]
    assert refusal["reason"] == "muted" and "'freeze'" in refusal["sentence"]
    assert [r for r in kube.requests if r.method == "PATCH"] == []
    assert kube.deployment(NS, "api")["spec"]["replicas"] == 3


def test_explain_says_what_the_windows_decide_at_a_given_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    office = (
        "  - name: office\n    time_intervals:\n      - weekdays: ['monday:friday']\n"
        "        times: [{start_time: '09:00', end_time: '17:00'}]\n"
        "        location: Europe/Berlin\n"
    )
    directory = rules(tmp_path, office, "    active_time_intervals: [office]\n")
    labels = ["alertname=HighCPUUsage", f"namespace={NS}", "deployment=api"]

    def explain(*args: str) -> tuple[int, list[str]]:
        status = main(["explain", "--rules", str(directory), *labels, *args])
        return status, capsys.readouterr().out.splitlines()

    status, lines = explain("--at", "2026-12-05T10:00+01:00")  # Saturday
    assert status == 0
    assert lines[6:8] == [
        "time intervals: action only inside 'office'; at 2026-12-05 09:00 UTC they hold it back.",
        "decision: refused (outside_active_time), escalated: The rule acts only inside its"
        " active time intervals ('office'), and Saturday 2026-12-05 10:00 Europe/Berlin is"
        " outside them; a human is paged instead.",
    ]
    status, lines = explain("--at", "2026-12-04T15:59Z")  # Friday 16:59 in Berlin
    assert "at 2026-12-04 15:59 UTC they let it act." in lines[6]
    assert lines[-2].startswith("decision: planned")
    assert main(["explain", "--rules", str(directory), *labels, "--at", "2026-12-04 16:00"]) == 2
    assert capsys.readouterr().err == (
        "remediator: --at must be a time with its zone, such as 2026-12-01T09:00:00Z, not"
        " '2026-12-04 16:00'\n"
    )


HOSTILE = {
    "ten thousand weekdays": (
        "  - name: w\n    time_intervals: [{weekdays: [" + "monday, " * 10_000 + "]}]\n",
        'field "time_intervals[0].weekdays" must have at most 100 items',
    ),
    "a zone name of 10 000 characters": (
        "  - name: w\n    time_intervals: [{location: " + "E" * 10_000 + "}]\n",
        'field "time_intervals[0].location" must be at most 128 characters',
    ),
    "a line break in a name": (
        '  - name: "w\\nrm -rf /"\n    time_intervals: [{}]\n',
        'time interval "w\\nrm -rf /": field "name" must be text without control characters',
    ),
    "a name that is a number": ("  - name: 7\n    time_intervals: [{}]\n", "must be a string"),
    "no items": ("  - name: w\n    time_intervals: []\n", "must have at least 1 item"),
    "items that are not a list": (
        "  - name: w\n    time_intervals: {weekdays: [monday]}\n",
        "must be a list",
    ),
    "a time of 10**40": (
        "  - name: w\n    time_intervals: [{times: [{start_time: '"
        + "9" * 40
        + "', end_time: '24:00'}]}]\n",
        "is not a time of day",
    ),
}


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_interval_is_one_sentence_naming_it(
    tmp_path: Path, text: tuple[str, str]
) -> None:
    intervals, words = text
    message = load_error(rules(tmp_path, intervals))
    assert message.startswith("10-rules.yaml: time interval") and words in message
    assert "\n" not in message and len(message) < 400
