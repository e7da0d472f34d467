"""The gateway's tables, in the ``gateway`` schema: who may call, what was called (a hash
chain), what units published, and each unit's feed of platform events."""
from sqlalchemy import (BigInteger, Column, DateTime, Index, Table, Text, UniqueConstraint, func)
from sqlalchemy.dialects.postgresql import JSONB, UUID

from motcua.runtime.db import service_metadata
from motcua.runtime.pii import SealedJson

metadata = service_metadata("gateway")

# A unit system's tokens: only a hash of the secret is kept; a token is shown once, when issued.
credentials = Table(
    "credentials", metadata,
    Column("token_id", Text, primary_key=True),
    Column("unit", Text, nullable=False),
    Column("secret_sha256", Text, nullable=False),
    Column("label", Text, nullable=False, server_default=""),
    Column("issued_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
)
Index("ix_credentials_unit", credentials.c.unit)

# Every call, chained: each entry's hash covers the previous entry's hash.
audit_log = Table(
    "audit_log", metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("unit", Text, nullable=False),          # the caller's unit ("" when unauthenticated)
    Column("credential", Text, nullable=False),    # the token id (never the secret)
    Column("method", Text, nullable=False),
    Column("dossier", Text, nullable=False),       # the dossier code, "" when none
    Column("result", Text, nullable=False),        # the gRPC status code's name
    Column("detail", Text, nullable=False),        # the refusal's field and reason, "" when OK
    Column("prev_hash", Text, nullable=False),
    Column("hash", Text, nullable=False),
)

# What units published (gRPC or RabbitMQ), by their own idempotency key.
unit_events = Table(
    "unit_events", metadata,
    Column("unit", Text, primary_key=True),
    Column("idempotency_key", Text, primary_key=True),
    Column("type", Text, nullable=False),
    Column("dossier", Text, nullable=False),
    Column("body", JSONB, nullable=False),
    Column("via", Text, nullable=False),           # grpc | amqp
    Column("outcome", Text, nullable=False),       # applying | accepted | rejected
    Column("field", Text, nullable=False, server_default=""),
    Column("reason", Text, nullable=False, server_default=""),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("applied_at", DateTime(timezone=True)),
    # The unit's Ed25519 signature it was verified with (motcua.contracts.signing.unit_event_content).
    Column("key_id", Text),
    Column("signature", Text),
)

# Each unit's feed: the platform events that concern it, numbered 1, 2, 3... per unit.
feed = Table(
    "feed", metadata,
    Column("unit", Text, primary_key=True),
    Column("position", BigInteger, primary_key=True),
    Column("event_id", UUID(as_uuid=False), nullable=False),
    Column("type", Text, nullable=False),
    Column("dossier", Text, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("payload", JSONB, nullable=False),
    Column("added_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("unit", "event_id", name="uq_feed_unit_event"),
)

feed_heads = Table(
    "feed_heads", metadata,
    Column("unit", Text, primary_key=True),
    Column("position", BigInteger, nullable=False),
)

# The receiving desk's lines of the feed hold the applicant's phone as intake's event carries it,
# sealed: what `motcua pii rotate` seals again under the active key.
sealed = (SealedJson("gateway.feed", ("unit", "position"), "payload"),)
