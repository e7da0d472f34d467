"""What one SQL statement costs the service's process in CPU, by the way it is executed.

    .venv/bin/python -m bench.statement_cost                    # the test database, 3,000 statements each
    .venv/bin/python -m bench.statement_cost --database-url postgresql+psycopg2://motcua@127.0.0.1:5432/motcua

A life is some 200 statements (``bench.statements``); this prints the client side of each, in CPU
microseconds of this process (``time.process_time``), for ``SELECT 1`` and for a statement shaped
like the inbox's insert (one row, a conflict clause, RETURNING), executed:

- through the ORM ``Session.execute`` (as the services do), then ``Connection.execute`` (Core),
  ``exec_driver_sql`` and psycopg2's own cursor, all under eventlet's monkey patching (the services'
  runtime: psycopg2 waits through the hub);
- and psycopg2's cursor in a process without eventlet (blocking), in a subprocess.

The server's side is not in these figures (``bench.throughput`` samples the PostgreSQL backends).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

DEFAULT_URL = os.environ.get("TEST_DATABASE_URL", "postgresql+psycopg2://motcua@127.0.0.1:5432/motcua_test")
SETUP = ("CREATE TEMPORARY TABLE bench_inbox (event_id uuid PRIMARY KEY, type text NOT NULL, "
         "processed_at timestamptz NOT NULL DEFAULT now())")
INSERT = ("INSERT INTO bench_inbox (event_id, type) VALUES (%(id)s::uuid, %(type)s) "
          "ON CONFLICT (event_id) DO NOTHING RETURNING event_id")


def cpu_us(run, n: int) -> float:
    run()       # warm: the first execution compiles and caches
    start = time.process_time()
    for _ in range(n):
        run()
    return round((time.process_time() - start) / n * 1e6, 1)


def green(url: str, n: int) -> dict:
    import eventlet
    eventlet.monkey_patch()
    import uuid

    from sqlalchemy import Column, MetaData, Table, Text, text
    from sqlalchemy.dialects.postgresql import UUID, insert
    from sqlalchemy.orm import Session

    from motcua.runtime.db import make_engine
    engine = make_engine(url, pool_size=1)
    inbox = Table("bench_inbox", MetaData(), Column("event_id", UUID(as_uuid=True), primary_key=True),
                  Column("type", Text))
    orm_insert = insert(inbox).on_conflict_do_nothing(index_elements=["event_id"]).returning(inbox.c.event_id)
    select_1 = text("SELECT 1")
    out = {}
    with Session(engine) as session:
        session.execute(text(SETUP))
        connection = session.connection()
        cursor = connection.connection.dbapi_connection.cursor()
        out["select_1"] = {
            "orm_session_execute": cpu_us(lambda: session.execute(select_1).all(), n),
            "core_connection_execute": cpu_us(lambda: connection.execute(select_1).all(), n),
            "exec_driver_sql": cpu_us(lambda: connection.exec_driver_sql("SELECT 1").all(), n),
            "psycopg2_cursor": cpu_us(lambda: (cursor.execute("SELECT 1"), cursor.fetchall()), n),
        }
        out["inbox_insert"] = {
            "orm_session_execute": cpu_us(lambda: session.execute(
                orm_insert, {"event_id": uuid.uuid4(), "type": "bench"}).first(), n),
            "psycopg2_cursor": cpu_us(lambda: (cursor.execute(INSERT, {"id": str(uuid.uuid4()), "type": "bench"}),
                                               cursor.fetchone()), n),
        }
        session.rollback()
    engine.dispose()
    return out


def blocking(url: str, n: int) -> dict:
    import uuid

    import psycopg2

    from motcua.runtime.db import libpq_dsn
    connection = psycopg2.connect(libpq_dsn(url))
    cursor = connection.cursor()
    cursor.execute(SETUP)
    out = {"select_1": cpu_us(lambda: (cursor.execute("SELECT 1"), cursor.fetchall()), n),
           "inbox_insert": cpu_us(lambda: (cursor.execute(INSERT, {"id": str(uuid.uuid4()), "type": "bench"}),
                                           cursor.fetchone()), n)}
    connection.rollback()
    connection.close()
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("-n", type=int, default=3000, help="statements per way (default 3000)")
    parser.add_argument("--blocking-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.blocking_only:
        print(json.dumps(blocking(args.database_url, args.n)))
        return 0
    # Without eventlet: a process of its own (monkey patching cannot be undone).
    plain = json.loads(subprocess.run([sys.executable, "-m", "bench.statement_cost", "--blocking-only",
                                       "--database-url", args.database_url, "-n", str(args.n)],
                                      check=True, capture_output=True, text=True).stdout)
    result = green(args.database_url, args.n)
    load = [round(x, 2) for x in os.getloadavg()]
    print(f"CPU microseconds of the client process per statement ({args.n} each; load average {load}):")
    for kind in ("select_1", "inbox_insert"):
        ways = "; ".join(f"{way} {us}" for way, us in result[kind].items())
        print(f"  {kind}: under eventlet: {ways}; psycopg2 without eventlet {plain[kind]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
