"""Sending the queued status changes to the national portal: in order per dossier, never lost,
retried with backoff, at the configured rate, pausing when the portal says 429.

Each round leases the rows that may go now (``store.claim``: per dossier only the first change
not yet sent, and only once the one before it was sent), sends them at most ``PORTAL_RATE_PER_SECOND``
(a token bucket, ``motcua.runtime.ratelimit``), and records each outcome as soon as the portal
answered, before that dossier's next change can be leased. A crash between the portal's answer
and the record leaves the row leased until its lease ends: it is sent again with the same
idempotency key, which the portal drops. Nothing is ever given up: a failure waits (doubling, up
to ``PORTAL_BACKOFF_MAX_SECONDS``) and is tried again; the pending gauges and the alert tell an
operator when the portal stays away.

Retries, leases and the portal's pauses follow the wall clock, never ``CLOCK_FILE``: they are about
the portal's real availability, not a dossier's (possibly simulated) time. The lag is measured from
the change's own instant.
"""
from __future__ import annotations

import time as wall
from collections.abc import Callable
from datetime import datetime, timedelta

import eventlet
import structlog
from nameko.extensions import DependencyProvider

from motcua.runtime.clock import system_now
from motcua.runtime.db import Database, autocommit
from motcua.runtime.ratelimit import RateLimiter
from motcua.runtime.rounds import Rounds
from services.portal import metrics, store
from services.portal.client import PortalClient, PortalError
from services.portal.domain import Failed, Policy, load_mapping
from services.portal.handlers import RecordAttempt, handle
from services.portal.repository import OutcomeWriter

log = structlog.get_logger("motcua.portal")
CLAIM_LIMIT = 20


class Syncer:
    """One process's sending, without nameko: ``round()`` leases, sends, records (tests drive it
    with fakes of the queue and the portal)."""

    def __init__(self, *, claim: Callable[[datetime, datetime], list], client, outcomes, now: Callable[[], datetime],
                 policy: Policy, limiter: RateLimiter, sleep: Callable[[float], None] = eventlet.sleep,
                 monotonic: Callable[[], float] = wall.monotonic):
        self.claim, self.client, self.outcomes, self.now = claim, client, outcomes, now
        self.policy, self.limiter, self.sleep, self.monotonic = policy, limiter, sleep, monotonic
        self.paused_until = 0.0          # the portal's Retry-After: nothing is sent before it

    def round(self, mapping) -> int:
        now = self.now()
        leased = self.claim(now, now + timedelta(seconds=self.policy.lease_seconds))
        for row in leased:
            self._wait_for_turn()
            try:
                self.client.send(row.message(mapping), row.key)
                error = None
            except PortalError as failure:
                error = failure
            events = handle("portal.record_attempt", RecordAttempt(row, error, self.now(), self.policy), self.outcomes)
            metrics.count(events)
            for event in events:
                if isinstance(event, Failed):
                    log.warning("portal sync attempt failed, will try again", code=event.code, seq=event.seq,
                                reason=event.reason, detail=event.detail, retry_in_s=round(event.retry_in, 1))
                    if event.reason == "throttled":
                        self.paused_until = max(self.paused_until, self.monotonic() + event.retry_in)
                else:
                    log.info("status sent to the portal", code=event.code, seq=event.seq, status=event.status,
                             lag_s=round(event.lag_seconds, 1), resent=event.resent)
        return len(leased)

    def _wait_for_turn(self) -> None:
        """The portal's own pause first, then a token of the configured rate."""
        while True:
            pause = self.paused_until - self.monotonic()
            if pause > 0:
                self.sleep(pause)
                continue
            allowed, wait = self.limiter.allow("portal")
            if allowed:
                return
            self.sleep(max(wait, 0.001))    # a wait rounded to nothing would never refill the bucket


class Sender(DependencyProvider):
    """nameko dependency running the sending loop in the portal service's container. Without
    ``PORTAL_URL`` nothing is sent: changes wait in the queue (and the gauges show them)."""

    def setup(self) -> None:
        config = self.container.config
        self.policy = Policy(float(config.get("PORTAL_BACKOFF_SECONDS", 5)),
                             float(config.get("PORTAL_BACKOFF_MAX_SECONDS", 300)),
                             float(config.get("PORTAL_LEASE_SECONDS", 60)))
        self.poll = float(config.get("PORTAL_POLL_SECONDS", 1))
        rate = float(config.get("PORTAL_RATE_PER_SECOND", 5))
        if rate <= 0:
            raise ValueError(f"PORTAL_RATE_PER_SECOND must be more than 0, got {rate}")
        self.limiter = RateLimiter(per_minute=rate * 60, burst=max(1, int(config.get("PORTAL_BURST", 1))))
        self.mapping = load_mapping(config.get("PORTAL_FIELDS_FILE"))      # checked at start, not at first send
        self.url = config.get("PORTAL_URL") or None
        self.loop = Rounds("portal-sender", lambda: self.syncer.round(self.mapping), poll=self.poll, full=CLAIM_LIMIT)
        for dependency in self.container.dependencies:
            if isinstance(dependency, Database):
                dependency.after_commit.append(lambda info: self.loop.wake())

    def start(self) -> None:
        if not self.url:
            log.warning("PORTAL_URL is not set: status changes are queued, not sent")
            return
        config = self.container.config
        database = next(d for d in self.container.dependencies if isinstance(d, Database))
        engine = database.engine

        gap = float(config.get("PORTAL_GAP_SECONDS", 600))

        def claim(now, lease_until):
            with autocommit(engine) as connection:
                return store.claim(connection, now, lease_until, limit=CLAIM_LIMIT, gap_seconds=gap)

        self.client = PortalClient(self.url, self.mapping, config.get("PORTAL_TOKEN") or None,
                                   float(config.get("PORTAL_TIMEOUT_SECONDS", 10)))
        self.syncer = Syncer(claim=claim, client=self.client, outcomes=OutcomeWriter(engine),
                             now=system_now, policy=self.policy, limiter=self.limiter)
        self.loop.start(self.container)

    def stop(self) -> None:
        self.loop.stop()

    kill = stop

    def get_dependency(self, worker_ctx):
        return self
