"""The database or the broker out of reach (a restart, a failover): the desk gets a 503 with
``Retry-After``, a bug still a 500."""
import json

from sqlalchemy import exc as sa_exc

from motcua.runtime.web import RETRY_AFTER_SECONDS, HttpEntrypoint


def test_a_transient_error_is_503_with_retry_after():
    entrypoint = HttpEntrypoint("POST", "/api/v1/dossiers")
    error = sa_exc.OperationalError("INSERT", {}, Exception("server closed the connection unexpectedly"))
    response = entrypoint.response_from_exception(error)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert json.loads(response.get_data())["error"].startswith("service unavailable")


def test_a_bug_is_still_500():
    response = HttpEntrypoint("POST", "/api/v1/dossiers").response_from_exception(KeyError("code"))
    assert response.status_code == 500
    assert "Retry-After" not in response.headers
