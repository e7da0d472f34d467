"""``motcua portal reconcile --from DATE --to DATE``: what the portal holds for a period against
what the platform sent it; every status change the portal does not hold is queued again (the
running portal service sends it, in order, at the configured rate, with its idempotency key).

The portal is asked first, then the platform's rows are read and the differences queued in one
statement: no network call inside a transaction. A change still waiting to be sent is not a
difference (it is on its way); what the portal holds and the platform does not is reported only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from sqlalchemy.engine import Engine

from motcua.runtime.db import autocommit
from services.portal import store
from services.portal.domain import differences, held_keys, period


@dataclass
class Report:
    first: date
    last: date
    portal_records: int
    platform_sent: int
    missing: list = field(default_factory=list)      # idempotency keys of the changes the portal lacks
    queued: int = 0
    dry_run: bool = False

    def lines(self) -> list[str]:
        done = "dry run, nothing queued" if self.dry_run else f"queued again: {self.queued}"
        return [f"period {self.first} to {self.last}: the portal holds {self.portal_records} status change(s), "
                f"the platform sent {self.platform_sent}",
                f"missing at the portal: {len(self.missing)}; {done}",
                *(f"  {key}" for key in self.missing)]


def reconcile(engine: Engine, client, fields, first: date, last: date, *, dry_run: bool = False) -> Report:
    start, end = period(first, last)
    records = client.held(first, last)                 # before any database work
    with autocommit(engine) as connection:
        sent = store.sent_between(connection, start, end)
    missing = differences(sent, held_keys(records, fields))
    report = Report(first, last, len(records), len(sent), [row.key for row in missing], dry_run=dry_run)
    if missing and not dry_run:
        with autocommit(engine) as connection:
            report.queued = store.resend(connection, [row.id for row in missing])
    return report
