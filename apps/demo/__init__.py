"""``motcua demo``: a simulated working week of the district and its wards, every service in
this process on an embedded broker and an embedded PostgreSQL (or on the real ones named by
``AMQP_URI`` and ``DATABASE_URL``), then form II.06a per unit and an HTML report with plots.

    plan.py           who arrives when, with what, and what becomes of it (pure, seeded)
    memory_broker.py  the shim that lets nameko run on kombu's memory:// transport
    stack.py          the services in nameko containers, migrations, catalogue, the clock file
    driver.py         the plan played over the services' HTTP APIs, tick by tick
    report.py         II.06a on the terminal; report.json, ii06a.csv, plots and index.html
"""
from __future__ import annotations

import shutil
import signal
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import date, datetime, timedelta
from pathlib import Path

DEFAULTS = {"days": 5, "seed": 1, "scale": 1.0, "out": "demo-report"}


def catalogue_infos(path: Path):
    """The desks and procedures of a catalogue file, as the plan sees them."""
    import yaml

    from apps.demo.plan import ProcedureInfo, UnitInfo
    from services.catalog.domain import parse_catalogue

    catalogue = parse_catalogue(yaml.safe_load(Path(path).read_text(encoding="utf-8")))
    units = [UnitInfo(u.code, u.short_name, u.kind) for u in catalogue.units if u.desk]
    procedures = {}
    for p in catalogue.procedures:            # the latest version of each code
        documents = tuple({"name": d.name, "form": d.form, "count": d.count} for d in p.documents)
        stages = tuple(tuple((s.agency, s.days) for s in stage.steps) for stage in p.steps)
        paying = [f for f in p.fees if f.kind != "exemption"]
        procedures[p.code] = ProcedureInfo(
            code=p.code, name=p.name, level=p.level, time_limit=p.time_limit, online_level=p.online_level,
            documents=documents, stages=stages, fees=bool(paying), sets=p.sets,
            per_page=any(f.kind == "per_page" for f in paying), per_copy=any(f.kind == "per_copy" for f in paying))
    return units, list(procedures.values())


class Progress:
    """A plain-text progress bar on stderr (redrawn in place on a terminal, every 10 % otherwise)."""

    def __init__(self, stream=None, width: int = 30):
        self.stream, self.width = stream or sys.stderr, width
        self.tty = self.stream.isatty()
        self.started = time.monotonic()
        self.shown = -1

    def __call__(self, done: int, total: int, moment: datetime) -> None:
        from motcua.contracts.calendar import TZ
        share = done / total if total else 1.0
        tenth = int(share * 10)
        if not self.tty and tenth == self.shown and done != total:
            return
        self.shown = tenth
        filled = int(share * self.width)
        text = (f"[{'#' * filled}{'.' * (self.width - filled)}] {100 * share:5.1f} %  "
                f"mô phỏng {moment.astimezone(TZ).strftime('%a %d/%m %H:%M')}  {time.monotonic() - self.started:5.0f} s")
        self.stream.write(("\r" + text) if self.tty else text + "\n")
        if self.tty and done == total:
            self.stream.write("\n")
        self.stream.flush()


def run(*, days: int = 5, seed: int = 1, scale: float = 1.0, units: list[str] | None = None,
        start: date | None = None, out: str | Path = "demo-report", workdir: str | Path | None = None,
        keep_workdir: bool = False, environ: dict | None = None, stdout=None, stderr=None) -> int:
    """Run the demo; 0 when II.06a balances for every unit. Call with eventlet already patched."""
    import os

    from motcua.contracts.calendar import TZ, default_calendar
    from apps.registry import DEFAULT_CATALOGUE
    from apps.demo import plan as planning
    from apps.demo import report
    from apps.demo.driver import Driver
    from apps.demo.stack import Stack
    from motcua.runtime.logs import configure_logging

    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    wall_start = time.monotonic()
    if days < 1:
        raise ValueError("--days: must be at least 1")
    if scale <= 0:
        raise ValueError("--scale: must be more than 0")
    environ = dict(os.environ if environ is None else environ)
    start = start or planning.DEFAULT_START
    calendar = default_calendar()
    catalogue_file = Path(environ.get("CATALOGUE_FILE") or DEFAULT_CATALOGUE)
    all_units, procedures = catalogue_infos(catalogue_file)
    chosen = planning.select_units(all_units, units)
    arrivals = planning.plan(seed=seed, start=start, days=days, units=chosen, procedures=procedures,
                             calendar=calendar, scale=scale)
    names = {u.code: u.short_name for u in all_units}
    names.update(_agency_names(catalogue_file))
    first, last = start, start + timedelta(days=days - 1)
    begin = datetime.combine(first, datetime.min.time(), tzinfo=TZ)
    end = begin + timedelta(days=days)
    days_off = [{"date": (first + timedelta(days=i)).isoformat(),
                 "name": calendar.day_off_name(first + timedelta(days=i)) or ""}
                for i in range(days) if not calendar.is_working_day(first + timedelta(days=i))]

    own_workdir = workdir is None
    folder = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="motcua-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / "demo.log"
    # Warnings and errors only unless LOG_LEVEL says otherwise: a line per request costs CPU.
    configure_logging("demo", json_lines=True, level=environ.get("LOG_LEVEL", "WARNING"))
    import logging
    logging.getLogger().handlers[0].setStream(open(log_path, "a", encoding="utf-8"))   # noqa: SIM115
    print(f"motcua demo: {len(arrivals)} citizens planned at {len(chosen)} desk(s), {first} … {last}"
          f" ({', '.join(d['date'] + ' ' + d['name'] for d in days_off) or 'no day off'}); seed {seed}, scale {scale}",
          file=stderr)
    stack = Stack(folder, environ)

    def stopped(*_):
        raise KeyboardInterrupt        # SIGTERM stops as Ctrl-C does: services and database first

    signal.signal(signal.SIGTERM, stopped)
    try:
        try:
            stack.start(begin, catalogue_file)
            broker = "RabbitMQ " + stack.amqp_uri.split("@")[-1] if "AMQP_URI" in environ else "embedded (memory://)"
            database = "PostgreSQL (DATABASE_URL)" if "DATABASE_URL" in environ else "embedded PostgreSQL 18"
            print(f"motcua demo: broker {broker}, database {database}, started in "
                  f"{time.monotonic() - wall_start:.1f} s; logs in {log_path}", file=stderr)
            print(f"  catalogue page  {stack.url('catalog')}/", file=stderr)
            for name in stack.services:
                print(f"  {name:<8} metrics {stack.url(name)}/metrics", file=stderr)
            driver = Driver(stack, arrivals, {p.code: p for p in procedures}, calendar, progress=Progress(stderr))
            driver.run(begin, end)
            stack.quiesce()
            views = driver.final_views()
            district = {"X-Official": "demo", "X-Unit": chosen[0].code, "X-Roles": "district_operator"}
            ii06a = driver._call("GET", "routing", f"/api/v1/reports/ii06a?from={first}&to={last}", headers=district)
            fees_rows = driver._call("GET", "fees", f"/api/v1/reports/fees?from={first}&to={last}",
                                     headers=district)["units"]
        finally:
            stack.stop()
    except KeyboardInterrupt:
        print("motcua demo: interrupted; the services and the database are stopped", file=stderr)
        return 130
    data = {
        "from": first.isoformat(), "to": last.isoformat(), "seed": seed, "scale": scale, "days": days,
        "units": [u.code for u in chosen], "days_off": days_off,
        "plan": planning.summary(arrivals), "activity": asdict(driver.counters),
        "ii06a": ii06a, "processing_hours": report.processing_hours(views),
        "on_time_rate": {u["unit"]: u["total"]["on_time_rate"] for u in ii06a["units"]},
        "overdue_by_agency": report.overdue_by_agency(views), "fees": report.fees_by_unit(fees_rows),
    }
    out = Path(out)
    files = report.write(out, data, names)
    print(report.ii06a_table(ii06a, names), file=stdout)
    unbalanced = report.balanced(ii06a)
    elapsed = time.monotonic() - wall_start
    print(f"motcua demo: report in {out.resolve() / 'index.html'} ({len(files)} files); "
          f"II.06a {'balances for every unit' if not unbalanced else 'does NOT balance for ' + ', '.join(unbalanced)}; "
          f"{elapsed:.1f} s", file=stderr)
    if own_workdir and not keep_workdir:
        shutil.rmtree(folder / "pg", ignore_errors=True)
    return 0 if not unbalanced else 1


def _agency_names(path: Path) -> dict[str, str]:
    import yaml
    from services.catalog.domain import parse_catalogue
    catalogue = parse_catalogue(yaml.safe_load(Path(path).read_text(encoding="utf-8")))
    return {u.code: u.short_name for u in catalogue.units}
