"""The raw baseline of the throughput benchmark, on the same broker and database:

    python -m bench.baseline amqp --uri amqp://guest:guest@127.0.0.1:5672/VHOST --seconds 10
    python -m bench.baseline pg --url postgresql://motcua@127.0.0.1:5432/motcua_bench --seconds 10

``amqp``: one producer process publishes persistent messages (1 KB JSON, delivery mode 2) with
publisher confirms, one at a time, to one durable queue, while one consumer process (prefetch 100)
acknowledges each; the figure is messages consumed per second. ``pg``: ``--clients`` connections
(threads; psycopg2 releases the GIL) each run ``INSERT`` + ``COMMIT`` in a loop into a scratch
table (durable commits, as the services'); the figure is committed transactions per second.
Each prints one JSON line on stdout. Plain kombu and psycopg2, no eventlet, no nameko.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import threading
import time
import uuid

BODY = {"id": "", "type": "bench.baseline", "version": 1, "unit": "000.05.20.H29",
        "occurred_at": "2026-03-02T09:00:00+07:00", "correlation_id": "",
        "payload": {"code": "000.05.20.H29-260302-0001", "procedure_code": "2.000815", "note": "x" * 700}}


def _consume(uri: str, queue_name: str, stop_at: float, out) -> None:
    from kombu import Connection, Queue
    count = 0
    first = last = None
    with Connection(uri) as connection:
        queue = Queue(queue_name, durable=True)
        channel = connection.channel()
        channel.basic_qos(0, 100, False)

        def on_message(body, message):
            nonlocal count, first, last
            message.ack()
            count += 1
            last = time.monotonic()
            first = first or last

        with connection.Consumer(queue, callbacks=[on_message], channel=channel, accept=["json"]):
            while time.monotonic() < stop_at:
                try:
                    connection.drain_events(timeout=0.5)
                except TimeoutError:
                    continue
                except OSError:  # socket.timeout on older kombu
                    continue
    out.put({"consumed": count, "first": first, "last": last})


def amqp(uri: str, seconds: float) -> dict:
    from kombu import Connection, Exchange, Producer, Queue
    queue_name = f"bench-baseline-{uuid.uuid4().hex[:8]}"
    exchange = Exchange("bench.baseline", type="direct", durable=True)
    queue = Queue(queue_name, exchange=exchange, routing_key=queue_name, durable=True)
    with Connection(uri) as connection:
        queue(connection.default_channel).declare()
    results = multiprocessing.get_context("spawn").Queue()
    publish_until = time.monotonic() + seconds
    consumer = multiprocessing.get_context("spawn").Process(
        target=_consume, args=(uri, queue_name, publish_until + 5, results))
    consumer.start()
    time.sleep(1.0)                      # the consumer is subscribed before the first publish
    published = 0
    started = time.monotonic()
    publish_until = started + seconds
    with Connection(uri, transport_options={"confirm_publish": True}) as connection:
        producer = Producer(connection.default_channel, exchange=exchange)
        while time.monotonic() < publish_until:
            body = dict(BODY, id=str(uuid.uuid4()))
            producer.publish(body, routing_key=queue_name, serializer="json", delivery_mode=2, retry=False)
            published += 1
    publish_seconds = time.monotonic() - started
    got = results.get(timeout=seconds + 30)
    consumer.join(timeout=10)
    with Connection(uri) as connection:
        queue(connection.default_channel).delete()
        exchange(connection.default_channel).delete()
    consume_seconds = (got["last"] - started) if got["last"] else None
    return {"published": published, "publish_per_s": round(published / publish_seconds, 1),
            "consumed": got["consumed"],
            "consumed_per_s": round(got["consumed"] / consume_seconds, 1) if consume_seconds else None,
            "seconds": round(publish_seconds, 2)}


def pg(url: str, seconds: float, clients: int) -> dict:
    import psycopg2
    schema = f"bench_baseline_{os.getpid()}"
    with psycopg2.connect(url) as admin:
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE SCHEMA {schema}")
            cursor.execute(f"CREATE TABLE {schema}.writes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                           "code text NOT NULL, body jsonb NOT NULL, at timestamptz NOT NULL DEFAULT now())")
    counts = [0] * clients
    body = json.dumps(BODY)
    stop_at = time.monotonic() + seconds

    def client(i: int) -> None:
        connection = psycopg2.connect(url)
        with connection.cursor() as cursor:
            while time.monotonic() < stop_at:
                cursor.execute(f"INSERT INTO {schema}.writes (code, body) VALUES (%s, %s)", (f"c-{i}", body))
                connection.commit()
                counts[i] += 1
        connection.close()

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    with psycopg2.connect(url) as admin:
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute(f"DROP SCHEMA {schema} CASCADE")
    return {"transactions": sum(counts), "tx_per_s": round(sum(counts) / elapsed, 1), "clients": clients,
            "seconds": round(elapsed, 2)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    a = sub.add_parser("amqp")
    a.add_argument("--uri", required=True)
    a.add_argument("--seconds", type=float, default=10)
    p = sub.add_parser("pg")
    p.add_argument("--url", required=True, help="a libpq URL (postgresql://…)")
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--clients", type=int, default=4)
    args = parser.parse_args(argv)
    result = amqp(args.uri, args.seconds) if args.what == "amqp" else pg(args.url, args.seconds, args.clients)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
