from motcua.runtime.migrations import run_migrations
from services.notify.models import metadata

run_migrations(metadata)
