from motcua.runtime.migrations import run_migrations
from services.intake.models import metadata

run_migrations(metadata)
