from motcua.runtime.migrations import run_migrations
from services.gateway.models import metadata

run_migrations(metadata)
