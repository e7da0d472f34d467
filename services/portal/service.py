"""Status sync to the national public-service portal (Cổng Dịch vụ công quốc gia).

Consumes intake's ``dossier.status_changed`` through the inbox: each change is queued in this
service's own table (``sync_rows``) in the transaction that records the event, and the sender
(``sync``) sends it to the portal in order per dossier, with retries, backoff and the portal's
rate limit. ``motcua portal reconcile`` (``reconcile``) compares a period with what the portal
holds and re-sends what it lost. HTTP on 8007: ``/health``, ``/metrics``.
"""
from __future__ import annotations

from motcua.runtime.inbox import event_consumer
from motcua.runtime.observability import DatabaseGauge, PlatformService
from services.portal import store, sync
from services.portal.handlers import handle
from services.portal.repository import SqlUnitOfWork


def pending_count(session, now):
    return [(unit, count) for unit, count, _ in store.pending(session, now)]


def pending_age(session, now):
    return [(unit, age) for unit, _, age in store.pending(session, now)]


class PortalService(PlatformService):
    name = "portal"
    sender = sync.Sender()
    pending_gauge = DatabaseGauge("motcua_portal_sync_pending", "Status changes not yet accepted by the national "
                                  "portal, by receiving unit.", ["unit"], pending_count)
    oldest_gauge = DatabaseGauge("motcua_portal_sync_oldest_pending_seconds", "Age of the oldest status change "
                                 "not yet accepted by the national portal, by receiving unit (the sync's lag "
                                 "now).", ["unit"], pending_age)

    @event_consumer("dossier.status_changed")
    def on_status_changed(self, events):
        handle("dossier.status_changed", events, SqlUnitOfWork(self.db))
