from motcua.runtime.migrations import run_migrations
from services.routing.models import metadata

run_migrations(metadata)
