"""One exception type for every mistake a user can fix; the entry point prints it as one line."""


class EvalrunError(Exception):
    """A problem with the user's config, inputs or environment, with the fix in its message."""


class ConfigError(EvalrunError):
    """An invalid config value, raised before any model loads."""
