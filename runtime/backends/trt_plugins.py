"""Loading TensorRT plugin libraries from Python, one way for every m2f process (the runtime's engine runner and
``m2f build``): TensorRT's own ``IPluginRegistry.load_library``, which asks the library for its creators
(``getCreators``). m2f's library then registers nothing itself (it sees TensorRT opening it), so nothing is
registered twice; a library already loaded in this process is not loaded again. docs/tensorrt.md lists how the other
hosts (trtexec, Polygraphy, Triton) load it.

Torch-free; imports nothing until called.
"""
from __future__ import annotations

import os
from pathlib import Path

from m2f.errors import BackendError

ENV = "M2F_PLUGINS"  # os.pathsep-separated plugin libraries every m2f process loads
_LOADED: dict[str, object] = {}  # resolved path -> the registry's handle, for this process


def plugin_libraries(plugins: str | Path | list | None) -> list[Path]:
    """The plugin libraries to load: ``plugins`` (one or a list), then $M2F_PLUGINS, then the package's own
    plugins/lib/*.so; BackendError naming the first that does not exist."""
    given = [] if plugins is None else [plugins] if isinstance(plugins, (str, Path)) else list(plugins)
    paths = [str(p) for p in given] + [p for p in os.environ.get(ENV, "").split(os.pathsep) if p]
    bundled = Path(__file__).resolve().parents[2] / "plugins" / "lib"
    if bundled.is_dir():
        paths += [str(p) for p in sorted(bundled.glob("*.so"))]
    for p in paths:
        if not Path(p).is_file():
            raise BackendError(f"plugin library {p} does not exist; build it with 'm2f plugins build' or fix "
                               f"--plugins / ${ENV}")
    return [Path(p) for p in paths]


def load_plugin_libraries(trt, libraries: list[Path]) -> None:
    """Register the plugins of ``libraries`` with TensorRT's registry (``trt``: the tensorrt module), each library
    once per process; BackendError with one sentence when TensorRT refuses one."""
    registry = trt.get_plugin_registry()
    for library in libraries:
        key = str(Path(library).resolve())
        if key in _LOADED:
            continue
        handle = registry.load_library(str(library))
        if handle is None:
            raise BackendError(f"TensorRT could not load the plugin library {library}: it was built for another "
                               f"TensorRT major version, is not a plugin library, or its plugins are registered "
                               f"already (from another copy); rebuild it here with 'm2f plugins build'")
        _LOADED[key] = handle
        missing = [name for name, version, namespace in _m2f_plugins(library)
                   if registry.get_creator(name, version, namespace) is None]
        if missing:
            raise BackendError(f"TensorRT loaded {library} but it registered none of its plugins ({', '.join(missing)} "
                               f"missing; its reason is in TensorRT's log above, e.g. a library built for another "
                               f"TensorRT major): rebuild it here with 'm2f plugins build'")


def _m2f_plugins(library: Path) -> list[tuple[str, str, str]]:
    """(name, version, namespace) of the plugins an m2f plugin library holds; [] for another library."""
    from m2f.plugins.build import build_info
    from m2f.plugins.masked_attention import contract as ma
    from m2f.plugins.ms_deform_attn import contract as msda

    if build_info(library) is None:
        return []
    return [(op.PLUGIN_NAME, op.PLUGIN_VERSION, op.PLUGIN_NAMESPACE) for op in (msda, ma)]
