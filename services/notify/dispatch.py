"""Sending what is queued: each message leased, sent with its idempotency key, then recorded.

Each message is recorded as sent (one committed statement) as soon as its provider accepted it,
before its sender sends the next one. A crash between sending and recording leaves only that
message 'sending' until its lease runs out: at most one message per sender (``NOTIFY_SENDERS``)
goes out again, with the same key, which the provider recognises (the SMS gateway and webhooks
by the Idempotency-Key header, e-mail by its Message-ID): the citizen sees one message. Zalo's
ZNS gets the same tracking_id (notify's message id); whether it refuses a repeated one is
[verify], so a crash at that moment may send that one Zalo message twice. A
database out of reach for a moment (a restart, a failover to the standby) is waited for, up to
``RECORD_RETRY_SECONDS``, before a sent message is left to its lease.
Failures are retried with exponential backoff up to a limit, then dead-lettered with the reason.
"""
from __future__ import annotations

import time as wall
from datetime import datetime, timedelta
from typing import Callable

import eventlet
import structlog
from eventlet import GreenPool
from nameko.extensions import DependencyProvider

from motcua.runtime import broker
from motcua.runtime.db import Database, UnitOfWork, autocommit
from motcua.runtime.inbox import dead_letter, transient
from motcua.contracts.pii import PiiError
from motcua.runtime.pii import keyring
from motcua.runtime.rounds import Rounds
from services.notify import channels as channel_module, metrics, store
from services.notify.handlers import RecordFailure, RecordSent, handle
from services.notify.messages import MessageFailed, MessageRetried, MessageSent, Policy
from services.notify.repository import QUEUED, SentUnitOfWork, SqlUnitOfWork, opened

log = structlog.get_logger("motcua.notify")
MESSAGES = metrics.MESSAGES      # kept here too: the counters' former home
CLAIM_LIMIT = 20                 # messages leased per round
RECORD_RETRY_SECONDS = 15.0      # how long a sent message's record is tried again (database out of reach)


class Dispatcher(DependencyProvider):
    """nameko dependency running the sending loop in the service's container."""

    def setup(self) -> None:
        config = self.container.config
        self.policy = Policy(int(config.get("NOTIFY_MAX_ATTEMPTS", 5)), float(config.get("NOTIFY_BACKOFF_SECONDS", 30)),
                             float(config.get("NOTIFY_LEASE_SECONDS", 60)))
        self.poll = float(config.get("NOTIFY_POLL_SECONDS", 0.5))
        self.senders = GreenPool(int(config.get("NOTIFY_SENDERS", 8)))
        self.channels = channel_module.build_channels(config)
        self.pii = keyring(config)
        self.amqp_uri = broker.amqp_uri(config)
        # kept-open SMTP connections unused for a while are closed after each round
        self.loop = Rounds("notify-dispatcher", self.round, poll=self.poll, full=CLAIM_LIMIT,
                           after_round=lambda: channel_module.close_idle(self.channels))
        for dependency in self.container.dependencies:
            if isinstance(dependency, Database):
                dependency.after_commit.append(self.queued)

    def start(self) -> None:
        from motcua.runtime.clock import clock_from_config
        database = next(d for d in self.container.dependencies if isinstance(d, Database))
        self.engine = database.engine
        self.uow = lambda: SqlUnitOfWork(UnitOfWork(database.sessions, database.after_commit), pii=self.pii)
        self.sent_uow = lambda: SentUnitOfWork(database.engine)
        self.now: Callable[[], datetime] = clock_from_config(self.container.config)
        self.loop.start(self.container)

    def stop(self) -> None:
        self.loop.stop()
        channel_module.close_all(self.channels)

    kill = stop

    def queued(self, info: dict) -> None:
        """After a commit: wake if it queued a message (recording a round's results queues none)."""
        if info.get(QUEUED):
            self.wake()

    def wake(self) -> None:
        self.loop.wake()

    def round(self) -> int:
        now = self.now()
        with autocommit(self.engine) as connection:
            leased = store.claim(connection, now, now + timedelta(seconds=self.policy.lease_seconds),
                                 limit=CLAIM_LIMIT)
        leased = [message for message in map(self._opened, leased) if message is not None]
        # Providers answer in milliseconds to seconds: recipients are served side by side, each
        # recipient's messages one after the other, in the order they were queued.
        in_turn: dict[str, list] = {}
        for message in leased:
            in_turn.setdefault(message.recipient, []).append(message)
        for _ in self.senders.imap(self._deliver_in_turn, in_turn.values()):
            pass
        return len(leased)

    def _opened(self, row):
        """The leased message with its recipient opened (stored sealed); one that cannot be opened
        (a key dropped from PII_KEYS too soon, an altered value) fails for good, with the reason,
        and never holds up the others."""
        try:
            return opened(row, self.pii)
        except PiiError as error:
            self._failed(row, str(error), permanent=True)
            return None

    def _deliver_in_turn(self, messages: list) -> None:
        """One recipient's messages in order, each recorded as sent before the next is sent."""
        for message in messages:
            delivery = self._deliver(message)
            if delivery is None:
                continue                                 # failed: recorded, retried or dead-lettered
            if not self._record_sent_retrying(*delivery):
                return          # database down: sending more would leave more to send again

    def _record_sent_retrying(self, message, provider_id: str, seconds: float) -> bool:
        """The provider has the message: while the database is out of reach for a moment (a
        restart, a failover: about a second), try recording it again rather than leave it to go
        out a second time after its lease. Recording is one statement that changes the message
        only while it is still 'sending', so a try whose outcome was unknown can be repeated."""
        pause, deadline = 0.25, wall.monotonic() + RECORD_RETRY_SECONDS
        while True:
            try:
                self._record_sent(message, provider_id, seconds)
                return True
            except Exception as error:
                if not transient(error) or not self.running or wall.monotonic() + pause > deadline:
                    log.warning("a sent message could not be recorded; it and the rest of its recipient's "
                                "messages go out after their lease", message_id=message.id, exc_info=True)
                    return False
                eventlet.sleep(pause)
                pause = min(pause * 2, 4.0)

    def _deliver(self, message) -> tuple | None:
        """Send one message: ``(message, provider id, seconds)`` once the provider accepted it;
        None when it failed (recorded here, retried or dead-lettered)."""
        channel = self.channels.get(message.channel)
        outgoing = channel_module.Outgoing(channel=message.channel, to=message.recipient, subject=message.subject,
                                           text=message.text, idempotency_key=message.idempotency_key,
                                           metadata={"code": message.code, "template": message.template,
                                                     "message_id": message.id})
        started = wall.monotonic()
        try:
            if channel is None:
                raise channel_module.PermanentError(f"channel {message.channel} is not configured")
            provider_id = channel.send(outgoing)
        except channel_module.TransientError as error:
            self._failed(message, str(error), permanent=False)
            return None
        except channel_module.PermanentError as error:
            self._failed(message, str(error), permanent=True)
            return None
        return message, provider_id, wall.monotonic() - started

    def _record_sent(self, message, provider_id: str, seconds: float) -> None:
        """Recorded by the handler in one statement (committed) before this sender goes on."""
        events = handle("notify.record_sent", RecordSent(message, provider_id, self.now()), self.sent_uow())
        metrics.count(events)
        for event in events:
            if isinstance(event, MessageSent):
                log.info("message sent", message_id=event.message_id, channel=event.channel,
                         template=event.template, attempt=event.attempts, send_s=round(seconds, 3))

    def _failed(self, message, reason: str, *, permanent: bool) -> None:
        events = handle("notify.record_failure", RecordFailure(message.id, reason, permanent, self.policy,
                                                               self.now()), self.uow())
        metrics.count(events)
        for event in events:
            if isinstance(event, MessageRetried):
                log.warning("message will be retried", message_id=event.message_id, channel=event.channel,
                            attempt=event.attempts, reason=event.reason)
            elif isinstance(event, MessageFailed):
                # after the commit: the dead-letter queue is the broker, never inside a transaction
                dead_letter(self.amqp_uri, f'{{"message_id": {event.message_id}, "template": "{event.template}", '
                                           f'"channel": "{event.channel}", "code": "{event.code or ""}"}}',
                            service="notify", queue="notify.messages",
                            reason=f"not delivered after {event.attempts} attempt(s): {event.reason}",
                            category="undeliverable", config=self.container.config)

    def get_dependency(self, worker_ctx):
        return self
