"""Every service's migrations build its schema from empty, and agree with its models."""
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from apps.registry import SERVICES


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_models_and_migrations_agree(engine, service):
    models = __import__(f"services.{service}.models", fromlist=["metadata"])
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={
            "include_schemas": True, "compare_type": True, "compare_server_default": True,
            "include_name": lambda name, type_, parent: type_ != "schema" or name == service,
            "version_table_schema": service,
        })
        differences = compare_metadata(context, models.metadata)
    assert differences == []


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_migrated_from_empty_into_its_own_schema(engine, service):
    models = __import__(f"services.{service}.models", fromlist=["metadata"])
    tables = set(inspect(engine).get_table_names(schema=service))
    assert {table.name for table in models.metadata.sorted_tables} | {"alembic_version"} == tables
