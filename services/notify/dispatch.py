"""Sending what is queued: each message leased, sent with its idempotency key, then recorded.

A crash between sending and recording leaves the message 'sending' until its lease runs out;
it is then sent again with the same key, which the provider recognises (the SMS gateway and
webhooks by the Idempotency-Key header, e-mail by its Message-ID): the citizen sees one message.
Failures are retried with exponential backoff up to a limit, then dead-lettered with the reason.
"""
from __future__ import annotations

import time as wall
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

import structlog
from eventlet import GreenPool
from eventlet.event import Event
from nameko.extensions import DependencyProvider
from prometheus_client import Counter, Histogram
from sqlalchemy.orm import Session

from motcua.runtime import broker
from motcua.runtime import outbox
from motcua.runtime.db import Database
from motcua.contracts.events import new_event
from motcua.runtime.inbox import dead_letter
from services.notify import channels as channel_module, models, store

log = structlog.get_logger("motcua.notify")

MESSAGES = Counter("motcua_notify_messages_total", "Messages by channel, template and state reached.",
                   ["channel", "template", "state"])
RETRIES = Counter("motcua_notify_retries_total", "Sending attempts that failed and will be retried.", ["channel"])
DEAD = Counter("motcua_notify_dead_letters_total", "Messages given up on and dead-lettered.", ["channel"])
LATENCY = Histogram("motcua_notify_delivery_seconds", "From queued to accepted by the provider.", ["channel"],
                    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 21600, 43200, 86400))


@dataclass(frozen=True)
class Policy:
    max_attempts: int = 5
    backoff_seconds: float = 30.0        # 30 s, 60 s, 120 s, …
    lease_seconds: float = 60.0          # how long a 'sending' message is left to its sender


def backoff(policy: Policy, attempts: int) -> timedelta:
    return timedelta(seconds=policy.backoff_seconds * (2 ** max(attempts - 1, 0)))


class Dispatcher(DependencyProvider):
    """nameko dependency running the sending loop in the service's container."""

    def setup(self) -> None:
        config = self.container.config
        self.policy = Policy(int(config.get("NOTIFY_MAX_ATTEMPTS", 5)), float(config.get("NOTIFY_BACKOFF_SECONDS", 30)),
                             float(config.get("NOTIFY_LEASE_SECONDS", 60)))
        self.poll = float(config.get("NOTIFY_POLL_SECONDS", 0.5))
        self.senders = GreenPool(int(config.get("NOTIFY_SENDERS", 8)))
        self.channels = channel_module.build_channels(config)
        self.amqp_uri = broker.amqp_uri(config)
        self.running = False
        self.wakeup = Event()
        for dependency in self.container.dependencies:
            if isinstance(dependency, Database):
                dependency.after_commit.append(self.wake)

    def start(self) -> None:
        from motcua.runtime.clock import clock_from_config
        database = next(d for d in self.container.dependencies if isinstance(d, Database))
        self.sessions = database.sessions
        self.now: Callable[[], datetime] = clock_from_config(self.container.config)
        self.running = True
        self.container.spawn_managed_thread(self._run, identifier="notify-dispatcher")

    def stop(self) -> None:
        self.running = False
        self.wake()

    kill = stop

    def wake(self) -> None:
        if self.running and not self.wakeup.ready():
            self.wakeup.send(True)

    def _run(self) -> None:
        while self.running:
            self.wakeup = Event()
            try:
                sent = self.round()
            except Exception:   # database or broker down: try again at the next poll
                log.warning("dispatch round failed", exc_info=True)
                sent = 0
            if not sent:
                self.wakeup.wait(timeout=self.poll)

    def round(self) -> int:
        now = self.now()
        with self.sessions() as session, session.begin():
            leased = store.claim(session, now, now + timedelta(seconds=self.policy.lease_seconds))
        # Providers answer in milliseconds to seconds: recipients are served side by side, each
        # recipient's messages one after the other, in the order they were queued.
        in_turn: dict[str, list] = {}
        for message in leased:
            in_turn.setdefault(message.recipient, []).append(message)
        sent = [delivery for deliveries in self.senders.imap(self._deliver_in_turn, in_turn.values())
                for delivery in deliveries]
        self._record_sent(sent)
        return len(leased)

    def _deliver_in_turn(self, messages: list) -> list[tuple]:
        return [delivery for delivery in map(self._deliver, messages) if delivery is not None]

    def _deliver(self, message) -> tuple | None:
        """Send one message: ``(message, provider id, seconds)`` once the provider accepted it;
        None when it failed (recorded here, retried or dead-lettered)."""
        channel = self.channels.get(message.channel)
        outgoing = channel_module.Outgoing(channel=message.channel, to=message.recipient, subject=message.subject,
                                           text=message.text, idempotency_key=message.idempotency_key,
                                           metadata={"code": message.code, "template": message.template})
        started = wall.monotonic()
        try:
            if channel is None:
                raise channel_module.PermanentError(f"channel {message.channel} is not configured")
            provider_id = channel.send(outgoing)
        except channel_module.TransientError as error:
            self._failed(message, str(error), retry=message.attempts < self.policy.max_attempts)
            return None
        except channel_module.PermanentError as error:
            self._failed(message, str(error), retry=False)
            return None
        return message, provider_id, wall.monotonic() - started

    def _record_sent(self, sent: list[tuple]) -> None:
        """One transaction for the round's sent messages. Until it commits they stay 'sending';
        a crash before that sends them again after the lease, with the same idempotency keys."""
        if not sent:
            return
        now = self.now()
        with self.sessions() as session, session.begin():
            for message, provider_id, _ in sent:
                store.mark(session, message.id, state="sent", sent_at=now, provider_id=provider_id, last_error=None)
                self._event(session, message, "notify.delivered", {"state": "sent"}, now)
        for message, _, seconds in sent:
            MESSAGES.labels(message.channel, message.template, "sent").inc()
            LATENCY.labels(message.channel).observe(max((now - message.created_at).total_seconds(), 0.0))
            log.info("message sent", message_id=message.id, channel=message.channel, template=message.template,
                     attempt=message.attempts, send_s=round(seconds, 3))

    def _failed(self, message, reason: str, *, retry: bool) -> None:
        now = self.now()
        with self.sessions() as session, session.begin():
            if retry:
                store.mark(session, message.id, state="queued", last_error=reason,
                           next_attempt_at=now + backoff(self.policy, message.attempts))
            else:
                store.mark(session, message.id, state="failed", last_error=reason)
                self._event(session, message, "notify.failed", {"reason": reason}, now)
        if retry:
            RETRIES.labels(message.channel).inc()
            log.warning("message will be retried", message_id=message.id, channel=message.channel,
                        attempt=message.attempts, reason=reason)
            return
        MESSAGES.labels(message.channel, message.template, "failed").inc()
        DEAD.labels(message.channel).inc()
        dead_letter(self.amqp_uri, f'{{"message_id": {message.id}, "template": "{message.template}", '
                                   f'"channel": "{message.channel}", "code": "{message.code or ""}"}}',
                    service="notify", queue="notify.messages",
                    reason=f"not delivered after {message.attempts} attempt(s): {reason}", category="undeliverable")

    @staticmethod
    def _event(session: Session, message, type_: str, extra: dict, now: datetime) -> None:
        payload = {"template": message.template, "channel": message.channel, "at": now.isoformat(), **extra}
        if message.code:
            payload["code"] = message.code
        outbox.add(session, models.outbox, new_event(type_, payload, message.unit or "000.00.20.H29",
                                                     occurred_at=now))

    def get_dependency(self, worker_ctx):
        return self
