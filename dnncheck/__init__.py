"""dnncheck: a pre-flight checklist for training deep neural networks.

`dnncheck.audit(...)` runs it from Python and returns the AuditResult the CLI renders (see
dnncheck/api.py); bad input raises `dnncheck.UserError` with the CLI's one-line message."""

__version__ = "0.1.0"

from dnncheck.api import audit  # noqa: E402  (light: torch and the checks load when an audit runs)
from dnncheck.errors import UserError  # noqa: E402

__all__ = ["audit", "UserError", "__version__"]
