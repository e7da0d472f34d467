"""Fixtures of the integration tests that exercise the platform's parts without a domain."""
import pytest
from sqlalchemy import text

from tests.integration import platform_service as ps


@pytest.fixture(scope="module")
def platform_schema(engine):
    """The ``platform_test`` schema of ``platform_service``, made again from empty."""
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA IF EXISTS platform_test CASCADE"))
        connection.execute(text("CREATE SCHEMA platform_test"))
    ps.metadata.create_all(engine)
    return engine
