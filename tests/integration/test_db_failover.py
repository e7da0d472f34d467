"""What a service's engine does when its server turns out to refuse writes (a standby: the old
primary restarted as one after a failover), and what a desk then gets: against the real server."""
import pytest
from sqlalchemy import event, text
from sqlalchemy import exc as sa_exc

from motcua.runtime.db import make_engine
from motcua.runtime.inbox import transient


def test_a_read_only_server_drops_the_pool_and_fails_the_command_as_transient(database_url):
    engine = make_engine(database_url, pool_size=2)
    read_only = {"on": True}

    @event.listens_for(engine, "connect")
    def _standby(dbapi_connection, record):
        if read_only["on"]:       # as a hot standby answers every write
            with dbapi_connection.cursor() as cursor:
                cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            dbapi_connection.commit()

    try:
        with engine.connect() as connection:
            first = connection.connection.dbapi_connection
        with pytest.raises(sa_exc.DBAPIError) as raised:
            with engine.begin() as connection:
                connection.execute(text("CREATE TEMPORARY TABLE t (x int)"))
        assert raised.value.orig.pgcode == "25006"
        assert raised.value.connection_invalidated
        assert transient(raised.value)
        assert first.closed       # the pool dropped it: the next transaction connects again
        read_only["on"] = False   # the new primary
        with engine.begin() as connection:
            connection.execute(text("CREATE TEMPORARY TABLE t (x int)"))
            assert connection.connection.dbapi_connection is not first
    finally:
        engine.dispose()
