"""The database URL as the engines and the plain psycopg2 connections (the outbox's LISTEN, tools)
read it: one host, or several for a failover (libpq tries them in order)."""
import psycopg2
from nameko.exceptions import RemoteError
from psycopg2.extensions import parse_dsn
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from motcua.runtime.db import libpq_dsn, make_engine, with_failover
from motcua.runtime.inbox import transient

FAILOVER = ("postgresql+psycopg2://motcua@/motcua?host=127.0.0.1:5441&host=127.0.0.1:5442"
            "&target_session_attrs=read-write")


def test_one_host_is_the_usual_libpq_string():
    assert parse_dsn(libpq_dsn("postgresql+psycopg2://motcua@127.0.0.1:5432/motcua")) == {
        "host": "127.0.0.1", "port": "5432", "dbname": "motcua", "user": "motcua"}


def test_a_password_and_options_pass_through():
    assert parse_dsn(libpq_dsn("postgresql+psycopg2://motcua:p%40ss%20w@db/motcua?sslmode=require")) == {
        "host": "db", "dbname": "motcua", "user": "motcua", "password": "p@ss w", "sslmode": "require"}


def test_several_hosts_become_libpq_lists_of_hosts_and_ports():
    assert parse_dsn(libpq_dsn(FAILOVER)) == {
        "host": "127.0.0.1,127.0.0.1", "port": "5441,5442", "dbname": "motcua", "user": "motcua",
        "target_session_attrs": "read-write"}


def test_several_hosts_want_a_server_that_accepts_writes_unless_the_url_says_otherwise():
    url = "postgresql+psycopg2://motcua@/motcua?host=a:5432&host=b:5432"
    assert with_failover(url).query["target_session_attrs"] == "read-write"
    assert parse_dsn(libpq_dsn(url))["target_session_attrs"] == "read-write"
    assert with_failover(url + "&target_session_attrs=any").query["target_session_attrs"] == "any"
    # libpq's own comma form too
    assert with_failover("postgresql+psycopg2://motcua@/motcua?host=a,b&port=1,2").query[
        "target_session_attrs"] == "read-write"
    # one host: left as it is
    assert "target_session_attrs" not in with_failover("postgresql+psycopg2://motcua@db/motcua").query
    assert "target_session_attrs" not in with_failover("postgresql+psycopg2://motcua@/motcua?host=/run/pg").query


def test_the_engine_is_built_from_the_same_url():
    engine = make_engine("postgresql+psycopg2://motcua@/motcua?host=a:5441&host=b:5442")
    try:
        assert engine.url == make_url(
            "postgresql+psycopg2://motcua@/motcua?host=a:5441&host=b:5442&target_session_attrs=read-write")
        args, params = engine.dialect.create_connect_args(engine.url)
        assert (params["host"], params["port"]) == ("a,b", "5441,5442")
    finally:
        engine.dispose()


def test_an_error_that_invalidated_the_pool_is_transient():
    """A standby refuses writes ("read-only transaction"): the engine counts it as a disconnect
    (``read_only_is_disconnect``, checked against a real server in tests/integration/test_db_failover.py)
    and the consumer puts the event back, the desk answers 503."""
    class ReadOnly(psycopg2.InternalError):
        pgcode = "25006"

    error = sa_exc.InternalError("INSERT", {}, ReadOnly("cannot execute INSERT in a read-only transaction"))
    assert not transient(error)
    error.connection_invalidated = True
    assert transient(error)
    assert transient(RemoteError("InternalError", "cannot execute INSERT in a read-only transaction"))
    assert not transient(RemoteError("InternalError", "division by zero"))
