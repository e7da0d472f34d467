"""Alembic, one history per service, each in its own PostgreSQL schema.

A service keeps ``migrations/`` beside its models: ``env.py`` is two lines that call
``run_migrations(metadata)``. The version table lives in the service's schema, so the
histories of the services never meet.
"""
from __future__ import annotations

from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, text

from motcua.runtime.db import make_engine


def alembic_config(migrations_dir: str | Path, url: str, service_config: dict | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    # A migration that converts rows reads its settings (the personal-data keys) from here.
    config.attributes["service_config"] = service_config
    return config


def upgrade(migrations_dir: str | Path, url: str, revision: str = "head", service_config: dict | None = None) -> None:
    command.upgrade(alembic_config(migrations_dir, url, service_config), revision)


def run_migrations(metadata: MetaData) -> None:
    """Body of every service's ``env.py`` (online mode only: we always have the database)."""
    schema = metadata.schema
    url = context.config.get_main_option("sqlalchemy.url")
    engine = make_engine(url, pool_size=1, application_name=f"migrate-{schema}")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        connection.commit()
        context.configure(
            connection=connection,
            target_metadata=metadata,
            version_table_schema=schema,
            include_schemas=True,
            include_name=lambda name, type_, parent: type_ != "schema" or name == schema,
            compare_type=True,
            compare_server_default=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
