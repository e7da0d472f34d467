"""``motcua due-date`` answers the calendar's edge cases; bad input exits 2 with a message."""
import pytest

from apps.cli import main


@pytest.mark.parametrize("received, limit, due", [
    ("2026-02-13T10:00", "3 working days", "2026-02-25"),     # Tết 2026
    ("2027-02-03T09:00", "1 working day", "2027-02-11"),      # Tết 2027
    ("2026-04-29T09:00", "2 working days", "2026-05-05"),     # 30/4 – 1/5
    ("2026-08-28T09:00", "1 working day", "2026-09-03"),      # the 2 Sep bridge (31/8 off)
    ("2026-08-21T09:00", "1 working day", "2026-08-22"),      # Saturday 22/8/2026 is worked
    ("2026-04-15T09:00", "15 days", "2026-05-04"),            # 15/4 + 15 = 30/4, a holiday: moves past 1/5 and the weekend
    ("2026-03-04T14:59", "same day", "2026-03-04"),
    ("2026-03-04T15:01", "same day", "2026-03-05"),
    ("2026-03-08T09:00", "same day", "2026-03-09"),           # Sunday
    ("2026-03-08T09:00", "3 ngày làm việc", "2026-03-11"),
])
def test_due_date(capsys, received, limit, due):
    assert main(["due-date", "--received", received, "--limit", limit]) == 0
    assert capsys.readouterr().out.strip() == due


def test_clock_stopped_twice(capsys):
    args = ["due-date", "--received", "2026-03-02T09:00", "--limit", "3 working days",
            "--stop", "2026-03-03T10:00/2026-03-05T10:00", "--stop", "2026-03-06T10:00/2026-03-09T10:00"]
    assert main(args) == 0
    # Counted: 3/3; stopped 4/3, 5/3; counted 6/3; stopped 9/3; counted 10/3 -> third day 10/3.
    assert capsys.readouterr().out.strip() == "2026-03-10"


def test_open_clock_stop(capsys):
    assert main(["due-date", "--received", "2026-03-02T09:00", "--limit", "3 working days",
                 "--stop", "2026-03-03T10:00/"]) == 0
    assert "clock stopped" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--received", "13/02/2026", "--limit", "3 working days"], "--received"),
    (["--received", "2026-02-13T10:00", "--limit", "3 weeks"], "--limit"),
    (["--received", "2026-02-13T10:00", "--limit", "0 days"], "--limit"),
    (["--received", "2026-02-13T10:00"], "--limit"),
    (["--received", "2026-02-13T10:00", "--limit", "3 days", "--stop", "2026-02-12T10:00/2026-02-14T10:00"], "stop"),
])
def test_bad_input_exits_2_with_a_message(capsys, args, message):
    assert main(["due-date", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.strip()


def test_unknown_service_is_a_usage_error(capsys):
    assert main(["run", "billing"]) == 2
    assert "unknown service 'billing'" in capsys.readouterr().err
