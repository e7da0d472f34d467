from motcua.runtime.migrations import run_migrations
from services.portal.models import metadata

run_migrations(metadata)
