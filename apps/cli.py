"""``motcua``: the operators' and developers' command line.

    motcua run SERVICE [SERVICE ...]  one service (nameko, with that service's config); several: in one process
    motcua up [--one-process] [SERVICE ...]  every built service, each its own process (--one-process: the
                                  nameko services in one, the gateway in its own); Ctrl-C stops them all
    motcua migrate [SERVICE ...]  apply every service's migrations
    motcua pii keys [--key-id k1]  a new set of the keys sealing ID and phone numbers (PII_KEYS, ...)
    motcua pii rotate [SERVICE ...] [--all] [--batch N]  seal every stored number again under PII_ACTIVE_KEY
    motcua due-date --received 2026-02-13T10:00 --limit "3 working days"
    motcua calendar show YEAR [--format json]  every day off and make-up working day, with its source
    motcua catalog check FILE     validate a catalogue file; names file, entry, field and reason
    motcua catalog load [FILE]    publish a catalogue file (new versions of what changed)
    motcua notify zalo-check [FILE]  validate notify's Zalo ZNS template mapping; names the field
    motcua reorganise check FILE [--catalogue FILE]  validate a reorganisation file (units that merge)
    motcua reorganise apply FILE  apply it from its effective date (idempotent)
    motcua report ii06a --unit CODE --from DATE --to DATE [--format csv]
    motcua report fees --unit CODE --from DATE --to DATE [--format csv]
    motcua fees quote --procedure CODE [--pages N] [--copies N]
    motcua demo [--days 5] [--seed 1] [--scale 1.0] [--units ...]  a simulated week, all in one process
    motcua gateway token issue|revoke|list    the unit systems' gRPC tokens (stored as hashes)
    motcua gateway audit verify               check the audit log's hash chain
    motcua audit verify [SERVICE ...]         check every service's audit chain (HTTP writes, the gateway's calls)
    motcua gateway rabbitmq-user UNIT         a RabbitMQ user that publishes only UNIT's events
    motcua keys generate|rotate UNIT | list   the units' Ed25519 signing keys and the public registry
    motcua verify-handoffs --from DATE --to DATE [--unit U]   re-verify the signatures kept; exit 1 on a mismatch

Bad input: a clear message on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import yaml

from apps.registry import DEFAULT_CATALOGUE, SERVICES, ServiceSpec


class UsageError(Exception):
    """Bad input from the user: printed on stderr, exit code 2."""


def _service(name: str) -> ServiceSpec:
    if name not in SERVICES:
        raise UsageError(f"unknown service {name!r}; built services: {', '.join(SERVICES)}")
    return SERVICES[name]


def _config(spec: ServiceSpec) -> dict:
    from motcua.runtime.config import ConfigError, load_config
    try:
        return load_config(spec.config_file)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


def _run_config(spec: ServiceSpec) -> dict:
    """The config of a service about to run: one that keeps ID or phone numbers needs its keys (a
    usage error naming the settings, not a traceback from the container)."""
    from motcua.runtime.config import ConfigError
    from motcua.runtime.pii import keyring
    config = _config(spec)
    if hasattr(_models(spec.name), "sealed"):
        try:
            keyring(config)
        except ConfigError as exc:
            raise UsageError(f"{spec.name}: {exc}") from None
    return config


# --- run / up / migrate ----------------------------------------------------------------------

def cmd_run(args) -> int:
    specs = [_service(name) for name in dict.fromkeys(args.services)]
    if len(specs) > 1 and not all(spec.nameko for spec in specs):
        raise UsageError("the gateway runs in a process of its own (grpcio cannot share an eventlet process); "
                         "run it with `motcua run gateway`")
    spec = specs[0]
    if not spec.nameko:
        return _run_gateway(spec)
    import eventlet
    eventlet.monkey_patch()  # before anything opens a socket
    from motcua.runtime.logs import configure_logging

    if len(specs) > 1:
        from apps import together
        for each in specs:
            _run_config(each)                  # a bad config is a usage error before anything starts
        configure_logging("+".join(each.name for each in specs))
        return together.run([each.name for each in specs])
    from nameko.cli.run import run

    from apps.together import service_class

    config = _run_config(spec)
    configure_logging(spec.name)
    run([service_class(spec)], config)
    return 0


def _run_gateway(spec: ServiceSpec) -> int:
    from motcua.runtime.logs import configure_logging
    from services.gateway.server import serve

    config = _run_config(spec)
    configure_logging(spec.name)
    return serve(config)


def cmd_up(args) -> int:
    names = list(dict.fromkeys(args.services or list(SERVICES)))
    for name in names:
        _run_config(_service(name))      # a missing setting (the personal-data keys) before anything starts
    # --one-process: the nameko services share one process (`motcua run A B ...`); the gateway
    # keeps its own (grpcio cannot run under eventlet).
    groups = [[name] for name in names]
    if args.one_process:
        shared = [name for name in names if SERVICES[name].nameko]
        groups = ([shared] if shared else []) + [[name] for name in names if not SERVICES[name].nameko]
    # Each process in a session of its own: Ctrl-C at the terminal reaches `up` alone, which then
    # stops every service exactly once (a service told twice trips over its own shutdown).
    processes = {"+".join(group): subprocess.Popen([sys.executable, "-m", "apps.cli", "run", *group],
                                                   start_new_session=True)
                 for group in groups}
    print(f"motcua up: started {', '.join(f'{n} (pid {p.pid})' for n, p in processes.items())}; "
          "Ctrl-C stops them all", file=sys.stderr)

    def stop_all(*_):
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)

    def interrupted(*_):
        raise KeyboardInterrupt  # SIGTERM (docker stop) stops as Ctrl-C does: children first

    signal.signal(signal.SIGTERM, interrupted)
    try:
        while all(process.poll() is None for process in processes.values()):
            time.sleep(0.5)
        failed = [name for name, process in processes.items() if process.poll() is not None]
        print(f"motcua up: {', '.join(failed)} stopped; stopping the others", file=sys.stderr)
        return_code = 1
    except KeyboardInterrupt:
        return_code = 0
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # stopping: a second Ctrl-C changes nothing
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    stop_all()
    # A graceful nameko stop lets running workers finish; past the grace period, kill (and reap).
    deadline = time.monotonic() + float(os.environ.get("MOTCUA_STOP_GRACE_SECONDS", 30))
    for name, process in processes.items():
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"motcua up: {name} did not stop in time; killing it", file=sys.stderr)
            process.kill()
            process.wait()
    return return_code


def cmd_migrate(args) -> int:
    from motcua.runtime.db import database_url
    from motcua.runtime.migrations import upgrade

    for name in args.services or list(SERVICES):
        spec = _service(name)
        config = _config(spec)
        upgrade(spec.directory / "migrations", database_url(config), service_config=config)
        print(f"{name}: migrated to head", file=sys.stderr)
    return 0


# --- pii: the keys that seal ID and phone numbers --------------------------------------------

def cmd_pii_keys(args) -> int:
    from motcua.runtime.pii import new_settings
    for name, value in new_settings(args.key_id).items():
        print(f"{name}={value}")
    print("keep these as a secret: without them the stored ID and phone numbers cannot be read", file=sys.stderr)
    return 0


def cmd_pii_rotate(args) -> int:
    """Seal every stored ID and phone number again under PII_ACTIVE_KEY (after adding a new key as the
    active one, keeping the old in PII_KEYS until this has run in every service that keeps them)."""
    from motcua.contracts.pii import PiiError
    from motcua.runtime.config import ConfigError
    from motcua.runtime.db import database_url, make_engine
    from motcua.runtime.pii import SealedColumns, keyring, reseal_json, reseal_rows

    names = args.services or [name for name in SERVICES if hasattr(_models(name), "sealed")]
    for name in names:
        models = _models(name)
        if not hasattr(models, "sealed"):
            raise UsageError(f"{name} keeps no ID or phone numbers")
        config = _config(_service(name))
        try:
            ring = keyring(config)
        except ConfigError as exc:
            raise UsageError(f"{name}: {exc}") from None
        engine = make_engine(database_url(config), pool_size=1, application_name="motcua-pii-rotate")
        try:
            with engine.connect() as connection:
                for spec in models.sealed:
                    def progress(done, total, table=spec.table):
                        print(f"  {table}: {done}/{total} rows read", file=sys.stderr)
                    if isinstance(spec, SealedColumns):
                        changed = reseal_rows(connection, spec, ring, everything=args.all, batch=args.batch,
                                              commit=True, progress=progress)
                    else:
                        changed = reseal_json(connection, spec, ring, batch=args.batch, commit=True,
                                              progress=progress)
                    connection.commit()
                    print(f"{spec.table}: {changed} row(s) sealed under key {ring.active}")
        except PiiError as exc:     # a value sealed under a key PII_KEYS no longer holds, or altered
            raise UsageError(f"{name}: {exc}") from None
        finally:
            engine.dispose()
    return 0


def _models(name: str):
    import importlib
    return importlib.import_module(f"services.{_service(name).name}.models")


# --- due-date --------------------------------------------------------------------------------

def cmd_due_date(args) -> int:
    from motcua.contracts.calendar import TZ, ClockStop, WorkingCalendar, due_date, load_overrides, parse_time_limit

    def instant(value: str, option: str) -> datetime:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise UsageError(f"{option}: {value!r} is not an ISO date-time such as 2026-02-13T10:00") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=TZ)

    received = instant(args.received, "--received")
    try:
        limit = parse_time_limit(args.limit)
    except ValueError as exc:
        raise UsageError(f"--limit: {exc}") from None
    stops = []
    for text in args.stop:
        start, _, end = text.partition("/")
        stops.append(ClockStop(instant(start, "--stop"), instant(end, "--stop") if end else None))
    try:
        calendar = WorkingCalendar(load_overrides(args.overrides))
        due = due_date(received, limit, calendar, stops)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    print(due.isoformat() if due else "clock stopped: no due date until the citizen returns")
    return 0


# --- calendar --------------------------------------------------------------------------------

def cmd_calendar_show(args) -> int:
    import json

    from motcua.contracts.calendar import CALENDAR_YEARS, load_overrides, year_days

    first, last = CALENDAR_YEARS[0], CALENDAR_YEARS[-1]
    text = args.year.strip()
    if not text.isdecimal() or not first <= int(text) <= last:
        raise UsageError(f"YEAR: must be a year from {first} to {last}, got {args.year!r}")
    try:
        overrides = load_overrides(args.overrides)
        days = year_days(int(text), overrides)
    except OSError as exc:
        raise UsageError(f"--overrides: {exc.filename}: cannot read: {exc.strerror}") from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.format == "json":
        print(json.dumps([{"date": d.day.isoformat(), "kind": "working_day" if d.working else "day_off",
                           "name": d.name, "origin": d.origin, "source": d.source, "file": d.file,
                           "note": d.note} for d in days], ensure_ascii=False, indent=2))
        return 0
    weekdays = ("Hai", "Ba", "Tư", "Năm", "Sáu", "Bảy", "CN")
    rows = [("Ngày", "Thứ", "Loại", "Tên", "Nguồn")]
    for d in days:
        if d.origin == "overrides":
            where = f"{Path(d.file).name}: {d.source or '(không ghi văn bản)'}"
        else:
            where = f"thư viện {d.source}"
        rows.append((d.day.strftime("%d/%m/%Y"), weekdays[d.day.weekday()],
                     "làm bù" if d.working else "nghỉ", d.name, where))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for index, row in enumerate(rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[4])
        if index and days[index - 1].note:
            print(" " * (sum(widths[:3]) + 6) + f"ghi chú: {days[index - 1].note}")
    print(f"\n{len(days)} ngày (thứ Bảy, Chủ nhật thông thường không liệt kê); tệp ghi đè: {overrides.origin}")
    return 0


# --- catalog ---------------------------------------------------------------------------------

def _read_catalogue(path: str):
    from services.catalog.domain import CatalogueInvalid, parse_catalogue

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not valid YAML: {exc}") from None
    try:
        return parse_catalogue(data)
    except CatalogueInvalid as invalid:
        lines = [f"{path}: {issue}" for issue in invalid.issues]
        raise UsageError("\n".join(lines + [f"{path}: {len(lines)} error(s); nothing loaded"])) from None


def cmd_catalog_check(args) -> int:
    catalogue = _read_catalogue(args.file)
    print(f"{args.file}: valid: {len(catalogue.units)} units, {len(catalogue.procedures)} procedure versions")
    return 0


def cmd_catalog_load(args) -> int:
    from motcua.runtime.db import database_url, make_engine
    from services.catalog import store

    path = args.file or _config(SERVICES["catalog"]).get("CATALOGUE_FILE") or str(DEFAULT_CATALOGUE)
    catalogue = _read_catalogue(path)
    engine = make_engine(database_url(_config(SERVICES["catalog"])), pool_size=1,
                         application_name="motcua-catalog-load")
    from sqlalchemy.orm import Session
    with Session(engine) as session, session.begin():
        report = store.load(session, catalogue)
    engine.dispose()
    print(f"{path}: {report.units_written} units written, {len(report.published)} procedure versions "
          f"published, {report.unchanged} unchanged")
    return 0


def cmd_notify_zalo_check(args) -> int:
    """The ZNS template mapping an operator edited, checked as notify checks it when it starts."""
    from services.notify import zalo

    path = args.file or _config(SERVICES["notify"]).get("ZALO_TEMPLATES_FILE") or str(zalo.DATA_FILE)
    try:
        mapping = zalo.load(path)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from None
    except zalo.ZaloTemplateInvalid as invalid:
        raise UsageError(f"{path}: {invalid.field}: {invalid.reason}") from None
    print(f"{path}: valid: {len(mapping)} message kinds, "
          f"{sum(len(t.params) for t in mapping.values())} parameters")
    return 0


CATALOGUE_READERS = ("intake", "routing", "fees", "notify")   # the services that keep a copy of the catalogue


def cmd_catalog_resync(args) -> int:
    """Refill each service's copy of the catalogue from the catalogue's own tables (idempotent)."""
    from sqlalchemy.orm import Session

    from motcua.runtime import catalogue
    from motcua.runtime.db import database_url, make_engine
    from services.catalog import store

    names = args.services or list(CATALOGUE_READERS)
    for name in names:
        if name not in CATALOGUE_READERS:
            raise UsageError(f"{name!r} keeps no copy of the catalogue; those that do: {', '.join(CATALOGUE_READERS)}")
    source = make_engine(database_url(_config(SERVICES["catalog"])), pool_size=1,
                         application_name="motcua-catalog-resync")
    with Session(source) as session, session.begin():
        procedures = [store.procedure_view(row) for row in store.all_versions(session)]
        units = [store.unit_view(row) for row in store.list_units(session)]
    source.dispose()
    for name in names:
        engine = make_engine(database_url(_config(SERVICES[name])), pool_size=1,
                             application_name="motcua-catalog-resync")
        with engine.begin() as connection:
            added, written = catalogue.fill(connection, name, procedures, units)
        engine.dispose()
        print(f"{name}: {added} procedure versions added ({len(procedures)} in the catalogue), {written} units written")
    return 0


# --- reorganise: units that merge ----------------------------------------------------------------

def _read_reorganisation(path: str, units: dict, procedures):
    from services.catalog.reorganisation import ReorganisationInvalid, parse_reorganisation

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not valid YAML: {exc}") from None
    try:
        return parse_reorganisation(data, units, procedures)
    except ReorganisationInvalid as invalid:
        lines = [f"{path}: {issue}" for issue in invalid.issues]
        raise UsageError("\n".join(lines + [f"{path}: {len(lines)} error(s); nothing applied"])) from None


def _describe_plan(path: str, plan) -> str:
    r = plan.reorganisation
    merged = "; ".join(f"{', '.join(t.dissolved)} -> {t.successor}" for t in r.transfers)
    return (f"{path}: {r.name}: from {r.effective_from.isoformat()}: {merged}"
            f" ({len(plan.new_units)} new unit(s))")


def cmd_reorganise_check(args) -> int:
    """Checked against a catalogue file (default: the shipped one), any day: no database needed."""
    from dataclasses import asdict

    catalogue = _read_catalogue(args.catalogue or str(DEFAULT_CATALOGUE))
    units = {u.code: {**asdict(u), "dissolved_on": None, "successor": None} for u in catalogue.units}
    plan = _read_reorganisation(args.file, units, {p.code for p in catalogue.procedures})
    print(_describe_plan(args.file, plan) + ": valid")
    return 0


def cmd_reorganise_apply(args) -> int:
    """Checked against the catalogue's database and applied in one transaction, from the effective
    date only (before it the old desks still receive: nothing to move yet)."""
    from sqlalchemy.orm import Session

    from motcua.contracts.calendar import local_date
    from motcua.runtime.clock import clock_from_config
    from motcua.runtime.db import database_url, make_engine
    from services.catalog import store

    config = _config(SERVICES["catalog"])
    today = local_date(clock_from_config(config)())
    engine = make_engine(database_url(config), pool_size=1, application_name="motcua-reorganise")
    try:
        with Session(engine) as session, session.begin():
            plan = _read_reorganisation(args.file, store.units_by_code(session), store.procedure_codes(session))
            effective = plan.reorganisation.effective_from
            if today < effective:
                raise UsageError(f"{args.file}: takes effect on {effective.isoformat()}; today is "
                                 f"{today.isoformat()}: apply it on or after that day (check works any day)")
            changed = store.apply_reorganisation(session, plan)
    finally:
        engine.dispose()
    print(_describe_plan(args.file, plan) + (f": applied, {changed} unit(s) changed" if changed
                                             else ": already applied, nothing changed"))
    return 0


# --- reports ---------------------------------------------------------------------------------

def _period(args):
    """``--from`` and ``--to`` as a period; a bad one is a usage error naming the option."""
    from motcua.contracts.periods import parse_period
    from motcua.contracts.refusals import Refusal
    try:
        return parse_period(getattr(args, "from"), args.to)
    except Refusal as error:
        raise UsageError(f"--{error.field}: {error.reason}") from None


def cmd_report_ii06a(args) -> int:
    from sqlalchemy.orm import Session

    from motcua.runtime.db import database_url, make_engine
    from services.routing import reports

    period = _period(args)
    engine = make_engine(database_url(_config(SERVICES["routing"])), pool_size=1, application_name="motcua-report")
    with Session(engine) as session:
        report = reports.ii06a(session, args.unit, period)
    engine.dispose()
    if args.format == "csv":
        sys.stdout.write(reports.as_csv(report))
    else:
        import json
        print(json.dumps(report, ensure_ascii=False, indent=2))
    return 0


def cmd_portal_reconcile(args) -> int:
    """What the national portal holds for a period against what the platform sent; the differences
    are queued again for the portal service to send."""
    from datetime import date

    from motcua.runtime.db import database_url, make_engine
    from services.portal.client import PortalClient, PortalError
    from services.portal.domain import MappingInvalid, load_mapping
    from services.portal.reconcile import reconcile

    try:
        first, last = date.fromisoformat(getattr(args, "from")), date.fromisoformat(args.to)
    except ValueError as error:
        raise UsageError(f"--from/--to: an ISO date YYYY-MM-DD ({error})") from None
    if last < first:
        raise UsageError("--to: the period ends before it starts")
    config = _config(SERVICES["portal"])
    if not config.get("PORTAL_URL"):
        raise UsageError("PORTAL_URL is not set: the portal cannot be asked")
    try:
        fields = load_mapping(config.get("PORTAL_FIELDS_FILE"))
    except MappingInvalid as error:
        raise UsageError(str(error)) from None
    client = PortalClient(config["PORTAL_URL"], fields, config.get("PORTAL_TOKEN") or None,
                          float(config.get("PORTAL_TIMEOUT_SECONDS", 10)))
    engine = make_engine(database_url(config), pool_size=1, application_name="motcua-portal-reconcile")
    try:
        report = reconcile(engine, client, fields, first, last, dry_run=args.dry_run)
    except PortalError as error:
        print(f"motcua portal reconcile: the portal could not be asked: {error}", file=sys.stderr)
        return 1
    finally:
        client.close()
        engine.dispose()
    print("\n".join(report.lines()))
    return 0


def cmd_report_fees(args) -> int:
    from sqlalchemy.orm import Session

    from motcua.runtime.db import database_url, make_engine
    from services.fees import store
    from services.fees.service import report_csv

    period = _period(args)
    engine = make_engine(database_url(_config(SERVICES["fees"])), pool_size=1, application_name="motcua-report")
    with Session(engine) as session:
        rows = store.report(session, args.unit, period.begin, period.end)
    engine.dispose()
    if args.format == "csv":
        sys.stdout.write(report_csv(rows))
    else:
        import json
        print(json.dumps({"from": period.first.isoformat(), "to": period.last.isoformat(), "units": rows}, ensure_ascii=False,
                         indent=2))
    return 0


def cmd_fees_quote(args) -> int:
    """The charges of a procedure in force, item by item, from the catalogue's database."""
    from sqlalchemy.orm import Session

    from motcua.contracts.calendar import TZ, local_date
    from motcua.runtime.db import database_url, make_engine
    from services.catalog import store as catalog_store
    from services.fees import domain

    for name in ("pages", "copies"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name}: must be at least 1, got {getattr(args, name)}")
    engine = make_engine(database_url(_config(SERVICES["catalog"])), pool_size=1, application_name="motcua-quote")
    with Session(engine) as session:
        row = catalog_store.get_procedure(session, args.procedure, local_date(datetime.now(TZ)))
    engine.dispose()
    if row is None:
        raise UsageError(f"--procedure: no procedure {args.procedure} in force today")
    try:
        lines = domain.compute_charges(row.content.get("fees", []), pages=args.pages, copies=args.copies,
                                       conditions=frozenset(args.condition))
    except domain.FeeError as error:
        raise UsageError(f"--{error.field}: {error.reason}") from None
    print(f"{row.code} {row.content['name']}")
    for line in lines:
        kind = "Phí" if line.type == "phi" else "Lệ phí"
        print(f"  {kind:7} {line.name}: {domain.format_vnd(line.amount)}  ({line.detail})")
    totals = domain.totals(lines)
    print(f"Phí: {domain.format_vnd(totals['phi'])}; lệ phí: {domain.format_vnd(totals['le_phi'])}")
    print(f"Tổng cộng: {domain.format_vnd(totals['total'])} ({domain.vnd_in_words(totals['total'])})")
    return 0


# --- the gateway's administration ----------------------------------------------------------

def _gateway_config() -> dict:
    return _config(_service("gateway"))


def cmd_token(args) -> int:
    """An official's access token from the district's identity provider, printed on stdout: for
    ``curl -H "Authorization: Bearer $(motcua token --username lan)"`` against a service."""
    import getpass

    from motcua.contracts.refusals import Refusal
    from motcua.runtime.auth import ProviderUnavailable, request_token
    issuer = args.issuer or os.environ.get("OIDC_ISSUER") or _config(SERVICES["intake"]).get("OIDC_ISSUER")
    if not issuer:
        raise UsageError("no identity provider: give --issuer or set OIDC_ISSUER (README, \"Sign-in\")")
    password = os.environ.get("MOTCUA_PASSWORD") or getpass.getpass(f"password of {args.username}: ")
    try:
        token = request_token(issuer, args.client_id, args.username, password,
                              client_secret=os.environ.get("OIDC_CLIENT_SECRET") or None)
    except (Refusal, ProviderUnavailable) as exc:
        raise UsageError(str(exc)) from None
    print(token)
    return 0


def cmd_gateway_token_issue(args) -> int:
    from services.gateway import admin
    token = admin.issue_token(_gateway_config(), args.unit, label=args.label or "", days=args.days)
    print(token)
    print(f"token for {args.unit}: give it to the unit system now; only its hash is kept", file=sys.stderr)
    return 0


def cmd_gateway_token_revoke(args) -> int:
    from motcua.contracts.refusals import Refusal
    from services.gateway import admin
    try:
        admin.revoke_token(_gateway_config(), args.token_id)
    except Refusal as exc:
        raise UsageError(str(exc)) from None
    print(f"revoked {args.token_id}", file=sys.stderr)
    return 0


def cmd_gateway_token_list(args) -> int:
    import json
    from services.gateway import admin
    print(json.dumps(admin.list_tokens(_gateway_config(), args.unit), ensure_ascii=False, indent=2))
    return 0


def cmd_gateway_audit_verify(args) -> int:
    from services.gateway import admin
    count, breaks = admin.verify_audit(_gateway_config(),
                                       progress=lambda n: print(f"  {n} entries checked", file=sys.stderr))
    for problem in breaks:
        print(f"entry {problem.seq}: {problem.problem}")
    if breaks:
        print(f"audit log: {count} entries, {len(breaks)} problem(s): the chain is broken", file=sys.stderr)
        return 1
    print(f"audit log: {count} entries, chain intact")
    return 0


def cmd_audit_verify(args) -> int:
    """Every service's hash chain: its HTTP writes' (``motcua.runtime.audit``), the gateway's calls'."""
    import importlib

    from motcua.runtime import audit
    from motcua.runtime.db import database_url
    from services.gateway import admin

    broken = 0
    for name in args.services or list(SERVICES):
        spec = _service(name)
        if name == "gateway":
            count, breaks = admin.verify_audit(_config(spec))
        else:
            importlib.import_module(f"services.{name}.models")
            table = audit.TABLES.get(name)
            if table is None:
                print(f"{name}: no HTTP writes, no audit log")
                continue
            count, breaks = audit.verify_database(database_url(_config(spec)), table)
        for problem in breaks:
            print(f"{name}: entry {problem.seq}: {problem.problem}")
        broken += bool(breaks)
        print(f"{name}: {count} entries, " + (f"{len(breaks)} problem(s): the chain is broken" if breaks
                                              else "chain intact"))
    return 1 if broken else 0


def cmd_gateway_rabbitmq_user(args) -> int:
    from motcua.contracts.refusals import Refusal
    from services.gateway import admin
    admin_user, _, admin_password = args.admin.partition(":")
    try:
        user, password = admin.rabbitmq_user(_gateway_config(), args.unit, args.management_url,
                                             (admin_user, admin_password))
    except Refusal as exc:
        raise UsageError(str(exc)) from None
    print(f"{user}\t{password}")
    print(f"{user} may publish on motcua.units with routing keys {args.unit}.<event type> only",
          file=sys.stderr)
    return 0


# --- signing keys and signed hand-offs -------------------------------------------------------

def _key_locations(args):
    from motcua.runtime import keys
    registry = keys.registry_path(args.registry)
    if registry is None:
        raise UsageError(f"--registry or {keys.REGISTRY_ENV}: where the public key registry is")
    return registry, keys.keys_dir(getattr(args, "keys_dir", None))


def cmd_keys_new(args) -> int:
    from datetime import timedelta, timezone
    from motcua.runtime import keys

    registry_file, folder = _key_locations(args)
    if folder is None:
        raise UsageError(f"--keys-dir or {keys.KEYS_ENV}: where to write the private key")
    try:
        start = datetime.fromisoformat(args.valid_from) if args.valid_from else datetime.now(timezone.utc)
    except ValueError:
        raise UsageError(f"--valid-from: {args.valid_from!r} is not an ISO instant") from None
    if start.tzinfo is None:
        raise UsageError("--valid-from: give the offset, e.g. 2026-12-07T00:00:00+07:00")
    rotate = args.keys_command == "rotate"
    try:
        registry, key, private = keys.new_key(keys.read_registry(registry_file), args.unit, start, rotate=rotate,
                                              overlap=timedelta(days=args.overlap_days) if rotate else None)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    path = keys.write_private_key(folder, key.key_id, private)
    keys.write_registry(registry_file, registry)
    print(key.key_id)
    print(f"{args.unit}: key {key.key_id} valid from {start.isoformat()}; private key {path} (keep it with the "
          f"unit's system only); public key added to {registry_file}", file=sys.stderr)
    return 0


def cmd_keys_list(args) -> int:
    import json
    from motcua.runtime import keys
    registry_file, _ = _key_locations(args)
    try:
        registry = keys.read_registry(registry_file)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    print(json.dumps([key.as_dict() for key in registry.keys if not args.unit or key.unit == args.unit],
                     ensure_ascii=False, indent=2))
    return 0


def cmd_verify_handoffs(args) -> int:
    """Every signed hand-over (routing) and unit event (gateway) of the period verified again."""
    from sqlalchemy.orm import Session

    from motcua.runtime import keys
    from motcua.runtime.db import database_url, make_engine
    from services.gateway import ingest
    from services.routing import signatures

    period = _period(args)
    routing_config = _config(SERVICES["routing"])
    try:
        registry = keys.read_registry(keys.registry_path(args.registry or routing_config.get("KEY_REGISTRY")))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    problems = []
    for name, what, check in (("routing", "hand-overs", signatures.check),
                              ("gateway", "unit events", ingest.check_kept)):
        engine = make_engine(database_url(_config(SERVICES[name])), pool_size=1, application_name="motcua-verify")
        try:
            with Session(engine) as session:
                count, found = check(session, registry, period.begin, period.end, args.unit)
        finally:
            engine.dispose()
        print(f"{what}: {count} checked, {len(found)} mismatch(es)", file=sys.stderr)
        problems += found
    for problem in problems:
        print(problem)
    return 1 if problems else 0


# --- demo ----------------------------------------------------------------------------------

def cmd_demo(args) -> int:
    """A simulated working week, every service in this process (see apps/demo)."""
    import eventlet
    eventlet.monkey_patch()  # before anything opens a socket
    from apps import demo

    try:
        start = datetime.strptime(args.start, "%Y-%m-%d").date() if args.start else None
    except ValueError:
        raise UsageError(f"--start: {args.start!r} is not an ISO date such as 2026-11-23") from None
    units = [u for text in args.units for u in text.split(",") if u.strip()] if args.units else None
    try:
        return demo.run(days=args.days, seed=args.seed, scale=args.scale, units=units, start=start, out=args.out,
                        workdir=args.workdir)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


# --- the parser ------------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="motcua", description="Một Cửa: one-stop administrative procedures.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = commands.add_parser("run", help="run one service, or several nameko services in one process")
    run.add_argument("services", nargs="+", metavar="SERVICE", help=", ".join(SERVICES))
    run.set_defaults(handler=cmd_run)

    up = commands.add_parser("up", help="run every built service, each as its own process")
    up.add_argument("services", nargs="*")
    up.add_argument("--one-process", action="store_true",
                    help="the nameko services together in one process (a small site: less CPU and memory); "
                         "the gateway still in its own")
    up.set_defaults(handler=cmd_up)

    migrate = commands.add_parser("migrate", help="apply every service's migrations")
    migrate.add_argument("services", nargs="*")
    migrate.set_defaults(handler=cmd_migrate)

    pii = commands.add_parser("pii", help="the keys sealing citizens' ID and phone numbers at rest")
    pii_commands = pii.add_subparsers(dest="pii_command", required=True, parser_class=_Parser)
    pii_keys = pii_commands.add_parser("keys", help="print a new set of PII_KEYS, PII_ACTIVE_KEY, PII_HASH_KEY")
    pii_keys.add_argument("--key-id", default="k1", help="the new key's id (default k1)")
    pii_keys.set_defaults(handler=cmd_pii_keys)
    rotate = pii_commands.add_parser("rotate", help="seal every stored number again under PII_ACTIVE_KEY")
    rotate.add_argument("services", nargs="*", help="default: every service that keeps them")
    rotate.add_argument("--all", action="store_true",
                        help="every row, not only those under another key (after a new PII_HASH_KEY: the digests)")
    rotate.add_argument("--batch", type=int, default=500, help="rows per transaction (default 500)")
    rotate.set_defaults(handler=cmd_pii_rotate)

    due = commands.add_parser("due-date", help="the appointment date of a dossier")
    due.add_argument("--received", required=True, help="ISO date-time of receipt, local time (Asia/Ho_Chi_Minh)")
    due.add_argument("--limit", required=True, help='"3 working days", "15 days" or "same day"')
    due.add_argument("--stop", action="append", default=[], metavar="START/END",
                     help="a clock stop (waiting for the citizen), END may be empty; repeatable")
    due.add_argument("--overrides", help="calendar overrides file (default: MOTCUA_CALENDAR_OVERRIDES or the shipped one)")
    due.set_defaults(handler=cmd_due_date)

    token = commands.add_parser("token", help="an official's access token from the identity provider (for curl)")
    token.add_argument("--username", required=True, help="the official's user name at the provider")
    token.add_argument("--issuer", help="the provider's issuer URL (default: OIDC_ISSUER)")
    token.add_argument("--client-id", default="motcua-cli",
                       help="a client with the password grant enabled (default motcua-cli); its secret, if "
                            "any, in OIDC_CLIENT_SECRET; the password in MOTCUA_PASSWORD or asked")
    token.set_defaults(handler=cmd_token)

    calendar = commands.add_parser("calendar", help="the working-day calendar")
    calendar_commands = calendar.add_subparsers(dest="calendar_command", required=True, parser_class=_Parser)
    show = calendar_commands.add_parser("show", help="every day off and make-up working day of a year, with its source")
    show.add_argument("year", help="e.g. 2026")
    show.add_argument("--format", choices=("table", "json"), default="table")
    show.add_argument("--overrides", help="calendar overrides file (default: MOTCUA_CALENDAR_OVERRIDES or the shipped one)")
    show.set_defaults(handler=cmd_calendar_show)

    catalog = commands.add_parser("catalog", help="the procedures catalogue")
    catalog_commands = catalog.add_subparsers(dest="catalog_command", required=True, parser_class=_Parser)
    check = catalog_commands.add_parser("check", help="validate a catalogue file")
    check.add_argument("file")
    check.set_defaults(handler=cmd_catalog_check)
    load = catalog_commands.add_parser("load", help="publish a catalogue file")
    load.add_argument("file", nargs="?")
    load.set_defaults(handler=cmd_catalog_load)
    resync = catalog_commands.add_parser("resync", help="refill services' copies of the catalogue from its tables")
    resync.add_argument("services", nargs="*", metavar="SERVICE", help="intake, routing, fees, notify (default: all)")
    resync.set_defaults(handler=cmd_catalog_resync)

    notify = commands.add_parser("notify", help="the notification service's data")
    notify_commands = notify.add_subparsers(dest="notify_command", required=True, parser_class=_Parser)
    zalo_check = notify_commands.add_parser("zalo-check", help="validate the Zalo ZNS template mapping")
    zalo_check.add_argument("file", nargs="?", help="default: ZALO_TEMPLATES_FILE or the shipped one")
    zalo_check.set_defaults(handler=cmd_notify_zalo_check)

    reorganise = commands.add_parser("reorganise", help="units that merge on a date (a reorganisation file)")
    reorganise_commands = reorganise.add_subparsers(dest="reorganise_command", required=True, parser_class=_Parser)
    reorganise_check = reorganise_commands.add_parser("check", help="validate a reorganisation file")
    reorganise_check.add_argument("file")
    reorganise_check.add_argument("--catalogue", help="the catalogue file it refers to (default: the shipped one)")
    reorganise_check.set_defaults(handler=cmd_reorganise_check)
    reorganise_apply = reorganise_commands.add_parser("apply", help="apply a reorganisation file (idempotent)")
    reorganise_apply.add_argument("file")
    reorganise_apply.set_defaults(handler=cmd_reorganise_apply)

    report = commands.add_parser("report", help="reports")
    report_commands = report.add_subparsers(dest="report_command", required=True, parser_class=_Parser)
    ii06a = report_commands.add_parser("ii06a", help="form II.06a: received, resolved, pending per unit and field")
    ii06a.add_argument("--unit", help="unit code (default: every unit)")
    ii06a.add_argument("--from", required=True, help="first day, ISO date")
    ii06a.add_argument("--to", required=True, help="last day, ISO date")
    ii06a.add_argument("--format", choices=("json", "csv"), default="json")
    ii06a.set_defaults(handler=cmd_report_ii06a)
    fees_report = report_commands.add_parser("fees", help="fees collected, refunded and outstanding per desk")
    fees_report.add_argument("--unit", help="unit code (default: every desk)")
    fees_report.add_argument("--from", required=True, help="first day, ISO date")
    fees_report.add_argument("--to", required=True, help="last day, ISO date")
    fees_report.add_argument("--format", choices=("json", "csv"), default="json")
    fees_report.set_defaults(handler=cmd_report_fees)

    portal = commands.add_parser("portal", help="the national public-service portal's status sync")
    portal_commands = portal.add_subparsers(dest="portal_command", required=True, parser_class=_Parser)
    reconcile = portal_commands.add_parser("reconcile", help="compare a period with what the portal holds and "
                                                             "send again what it lost")
    reconcile.add_argument("--from", required=True, help="first day, ISO date (local)")
    reconcile.add_argument("--to", required=True, help="last day, ISO date (local)")
    reconcile.add_argument("--dry-run", action="store_true", help="report the differences, queue nothing")
    reconcile.set_defaults(handler=cmd_portal_reconcile)

    fees = commands.add_parser("fees", help="fees and charges")
    fees_commands = fees.add_subparsers(dest="fees_command", required=True, parser_class=_Parser)
    quote = fees_commands.add_parser("quote", help="the charges of a procedure, item by item")
    quote.add_argument("--procedure", required=True, help="national procedure code, e.g. 2.000815")
    quote.add_argument("--pages", type=int, default=1)
    quote.add_argument("--copies", type=int, default=1)
    quote.add_argument("--condition", action="append", default=[],
                       help="an exemption condition that applies (e.g. on_time_registration); repeatable")
    quote.set_defaults(handler=cmd_fees_quote)

    audit_log = commands.add_parser("audit", help="the audit logs of every service")
    audit_log_commands = audit_log.add_subparsers(dest="audit_command", required=True, parser_class=_Parser)
    verify_all = audit_log_commands.add_parser("verify", help="check every service's hash chain; exit 1 where "
                                               "one is broken")
    verify_all.add_argument("services", nargs="*", help="only these services (default: all)")
    verify_all.set_defaults(handler=cmd_audit_verify)

    gateway = commands.add_parser("gateway", help="the unit systems' gateway: tokens, audit, RabbitMQ users")
    gateway_commands = gateway.add_subparsers(dest="gateway_command", required=True, parser_class=_Parser)
    token = gateway_commands.add_parser("token", help="the unit systems' tokens")
    token_commands = token.add_subparsers(dest="token_command", required=True, parser_class=_Parser)
    issue = token_commands.add_parser("issue", help="a new token for a unit (printed once)")
    issue.add_argument("unit", help="unit code, e.g. 000.05.20.H29")
    issue.add_argument("--label", help="which system holds it")
    issue.add_argument("--days", type=int, help="valid for this many days (default: until revoked)")
    issue.set_defaults(handler=cmd_gateway_token_issue)
    revoke = token_commands.add_parser("revoke", help="revoke a token at once (no restart)")
    revoke.add_argument("token_id")
    revoke.set_defaults(handler=cmd_gateway_token_revoke)
    listing = token_commands.add_parser("list", help="tokens (never their secrets)")
    listing.add_argument("--unit")
    listing.set_defaults(handler=cmd_gateway_token_list)
    audit = gateway_commands.add_parser("audit", help="the audit log")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True, parser_class=_Parser)
    verify = audit_commands.add_parser("verify", help="check the hash chain; exit 1 where it is broken")
    verify.set_defaults(handler=cmd_gateway_audit_verify)
    rabbit = gateway_commands.add_parser("rabbitmq-user", help="a RabbitMQ user publishing only its unit's events")
    rabbit.add_argument("unit")
    rabbit.add_argument("--management-url", default=os.environ.get("RABBITMQ_MANAGEMENT_URL",
                                                                   "http://127.0.0.1:15672"),
                        help="the management API; a cluster's nodes separated by ';', the first that answers "
                             "is used (default: RABBITMQ_MANAGEMENT_URL)")
    rabbit.add_argument("--admin", default=os.environ.get("RABBITMQ_ADMIN", "guest:guest"),
                        help="USER:PASSWORD of a RabbitMQ administrator (default: RABBITMQ_ADMIN)")
    rabbit.set_defaults(handler=cmd_gateway_rabbitmq_user)
    keys_parser = commands.add_parser("keys", help="the units' signing keys (Ed25519) and the public registry")
    keys_commands = keys_parser.add_subparsers(dest="keys_command", required=True, parser_class=_Parser)
    for name, help_text in (("generate", "a unit's first key pair"),
                            ("rotate", "a new key pair; the unit's current keys end after the overlap"),
                            ("list", "the registry's public keys")):
        sub = keys_commands.add_parser(name, help=help_text)
        if name == "list":
            sub.add_argument("--unit")
        else:
            sub.add_argument("unit", help="unit code, e.g. 000.03.20.H29")
            sub.add_argument("--keys-dir", help="where the private key is written (default: MOTCUA_SIGNING_KEYS)")
            sub.add_argument("--valid-from", help="ISO instant with offset (default: now)")
        if name == "rotate":
            sub.add_argument("--overlap-days", type=float, default=7,
                             help="how long the old keys still verify (default 7 days)")
        sub.add_argument("--registry", help="the public key registry (default: MOTCUA_KEY_REGISTRY)")
        sub.set_defaults(handler=cmd_keys_list if name == "list" else cmd_keys_new)
    check_handoffs = commands.add_parser("verify-handoffs", help="verify again the signatures kept with hand-overs "
                                         "and unit events; exit 1 on any mismatch")
    check_handoffs.add_argument("--from", required=True, help="first day (ISO date)")
    check_handoffs.add_argument("--to", required=True, help="last day (ISO date)")
    check_handoffs.add_argument("--unit", help="only what this unit signed")
    check_handoffs.add_argument("--registry", help="the public key registry (default: MOTCUA_KEY_REGISTRY)")
    check_handoffs.set_defaults(handler=cmd_verify_handoffs)
    demo = commands.add_parser("demo", help="a simulated working week on an embedded broker and database")
    demo.add_argument("--days", type=int, default=5, help="days to simulate (default 5)")
    demo.add_argument("--seed", type=int, default=1, help="the same seed gives the same report (default 1)")
    demo.add_argument("--scale", type=float, default=1.0, help="arrivals multiplier (default 1.0)")
    demo.add_argument("--units", action="append", metavar="UNIT[,UNIT]",
                      help="only these desks: code, short name, ward number or 'district' (default: all 17)")
    demo.add_argument("--start", help="first day, ISO date (default 2026-11-23, a week with a holiday)")
    demo.add_argument("--out", default="demo-report", help="the report's folder (default ./demo-report)")
    demo.add_argument("--workdir", help="working folder: embedded database, clock, log (default: a new temporary one)")
    demo.set_defaults(handler=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.handler(args)
    except UsageError as exc:
        print(str(exc), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
