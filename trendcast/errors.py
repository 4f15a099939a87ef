"""User-facing errors: one line that names the thing at fault and the rule it broke."""


class TrendcastError(Exception):
    """An error the CLI prints as one line (no traceback) before exiting non-zero."""


class DatabaseUnavailable(TrendcastError):
    """The configured PostgreSQL server cannot be reached."""


class InputError(TrendcastError):
    """A file, column, row or argument breaks a rule; nothing was written."""
