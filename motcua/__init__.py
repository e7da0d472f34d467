"""Một Cửa: the contracts (`motcua.contracts`) and the runtime (`motcua.runtime`) of the one-stop services."""
import warnings

# eventlet (nameko's runtime) announces its deprecation on import; we know (engineering.md §1).
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
