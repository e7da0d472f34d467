"""Một Cửa: the shared contracts and platform of the one-stop services, and the CLI."""
import warnings

# eventlet (nameko's runtime) announces its deprecation on import; we know (engineering.md §1).
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
