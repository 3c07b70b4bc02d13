"""User-facing errors: one clear sentence naming the problem and the fix. The CLI prints them without a trace."""


class M2FError(Exception):
    """A problem with the user's input (file, checkpoint, config, argument) rather than a bug in m2f."""


class CheckpointError(M2FError):
    """A checkpoint cannot be read, is unsafe to read, or does not fit the chosen architecture."""


class ConfigError(M2FError):
    """A config file or preset cannot be used."""


class MissingDependencyError(M2FError):
    """An optional dependency of the requested stage is not installed."""


def require(module: str, extra: str, purpose: str):
    """Import ``module`` or raise MissingDependencyError naming the pip extra that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingDependencyError(
            f"{purpose} needs the Python package '{module.split('.')[0]}' ({e}); "
            f"install it with: pip install 'm2f[{extra}]'"
        ) from None
