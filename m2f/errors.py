"""Every user-facing error of m2f: one clear sentence naming the problem and the fix. The CLI prints them without a
trace (exit status 2); anything else reaching the CLI is a bug in m2f. Stdlib only.

    M2FError
    ├── ArgumentError          an option or argument value is out of range or inconsistent (also a ValueError)
    ├── CheckpointError        a checkpoint cannot be read, is unsafe to read, or does not fit the architecture
    ├── ConfigError            a config file, preset or config value cannot build a model
    ├── DatasetError           a dataset (COCO json, image folder) is missing or malformed
    ├── ImageError             an input image cannot be read or has an unsupported layout
    ├── MetadataError          an artifact's m2f metadata is missing, unreadable or of another format version
    ├── MissingDependencyError an optional dependency of the requested stage is not installed
    └── BackendError           a backend (ONNX Runtime, TensorRT, a plugin library) cannot run the model
"""


class M2FError(Exception):
    """A problem with the user's input (file, checkpoint, config, argument) rather than a bug in m2f."""


class ArgumentError(M2FError, ValueError):
    """An argument value is invalid; a ValueError too, so library callers may catch either."""


class CheckpointError(M2FError):
    """A checkpoint cannot be read, is unsafe to read, or does not fit the chosen architecture."""


class ConfigError(M2FError, ValueError):
    """A config file, preset or config value cannot be used."""


class DatasetError(M2FError):
    """A dataset (annotations, images) is missing or malformed."""


class ImageError(M2FError):
    """An input image cannot be read or has an unsupported layout."""


class MetadataError(M2FError):
    """An artifact's m2f metadata is missing, unreadable or of an unsupported version."""


class MissingDependencyError(M2FError):
    """An optional dependency of the requested stage is not installed."""


class BackendError(M2FError):
    """An inference backend or plugin library cannot load or run the model."""


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


def first_line(error: BaseException, limit: int = 200, with_type: bool = False) -> str:
    """The first non-empty line of an exception's message (at most ``limit`` characters), for quoting a library's
    error inside one of ours; the type name alone when the message is empty, prefixed when ``with_type``."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    return f"{type(error).__name__}: {lines[0][:limit]}" if with_type else lines[0][:limit]


class M2FWarning(UserWarning):
    """Something the user should know that does not stop the work (an image shrunk to fit a static canvas, ...).
    The CLI prints these as one 'note:' line each."""
