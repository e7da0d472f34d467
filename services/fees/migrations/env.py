from motcua.runtime.migrations import run_migrations
from services.fees.models import metadata

run_migrations(metadata)
