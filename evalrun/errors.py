"""One exception type for every mistake a user can fix; the entry point prints it as one line."""


class EvalrunError(Exception):
    """A problem with the user's config, inputs or environment, with the fix in its message."""


class ConfigError(EvalrunError):
    """An invalid config value, raised before any model loads."""


def load_error(what: str, name: str, exc: BaseException, key: str) -> EvalrunError:
    """A one-line error for a failed ``from_pretrained``/``load_dataset`` that says how to fix it.

    ``key`` is the config key that takes a local copy (e.g. ``model.path``).
    """
    import os

    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes") or any(
        s in text.lower() for s in ("offline", "not fully cached", "connection", "resolve", "couldn't reach"))
    if offline:
        reason = "it is not in the local Hugging Face cache and the hub cannot be reached"
    else:
        reason = text if len(text) <= 300 else text[:300] + "..."
    return EvalrunError(f"could not load {what} {name!r}: {reason}. Download it once where there is network "
                        f"(`hf download {name} --local-dir DIR`) and set {key}=DIR")
