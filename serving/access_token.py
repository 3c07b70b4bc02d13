"""The served model's access token, kept off tritonserver's command line.

PyTriton protects Triton's model-control endpoints with a generated token, which Triton reads only from its command
line (``--http-restricted-api`` / ``--grpc-restricted-protocol``) — world-readable in ``/proc/PID/cmdline``. m2f
starts tritonserver with ``PLACEHOLDER`` there instead, writes the real setting to a file only this user can read,
and preloads ``token_shim.c`` (built here with the machine's C compiler), which swaps the setting in before
tritonserver's ``main`` and deletes the file. An unswapped placeholder is an invalid setting that tritonserver refuses,
so a failed swap never leaves a server running with a known token. PyTriton's own client keeps the real token.
"""
from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
from pathlib import Path

from m2f.errors import M2FError

PLACEHOLDER = "@m2f-restricted-setting@"  # token_shim.c PLACEHOLDER
FILE_VARIABLE = "M2F_RESTRICTED_FILE"  # names the file holding the real setting
PRELOAD_VARIABLE = "M2F_LD_PRELOAD"  # LD_PRELOAD as it was, restored by the shim for tritonserver's children
SHIM_SOURCE = Path(__file__).with_name("token_shim.c")
SHIM_NAME = "libm2f_token_shim.so"
SETTING_NAME = "restricted-setting"
# PyTriton's server-config keys that carry "<endpoints>:<header>=<token>"
RESTRICTED_KEYS = ("http-restricted-api", "grpc-restricted-protocol")
COMPILERS = ("cc", "gcc", "clang")
COMPILE_TIMEOUT_S = 120


def c_compiler() -> list[str]:
    """The C compiler to build the shim with, as a command: ``$CC`` (which may carry flags, e.g. "gcc -m64"), else
    the first of cc, gcc, clang on PATH."""
    named = shlex.split(os.environ.get("CC", ""))
    found = shutil.which(named[0]) if named else next(filter(None, map(shutil.which, COMPILERS)), None)
    if not found:
        what = (f"CC={os.environ['CC']!r} is not an executable" if named
                else "no C compiler (cc, gcc, clang) is on PATH")
        raise M2FError(f"m2f serve builds a small C library ({SHIM_SOURCE.name}) that keeps the server's access "
                       f"token off its command line, and {what}: install one (e.g. apt install gcc) or name it in CC")
    return [found, *named[1:]]


def build_shim(folder: Path) -> Path:
    """Compile token_shim.c into ``folder``; the shared library's path."""
    library = Path(folder) / SHIM_NAME
    command = [*c_compiler(), "-shared", "-fPIC", "-O2", "-o", str(library), str(SHIM_SOURCE)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise M2FError(f"could not build {SHIM_SOURCE.name} with {command[0]} ({e})") from None
    if done.returncode != 0:
        first = (done.stderr.strip().splitlines() or ["no message"])[0]
        raise M2FError(f"could not build {SHIM_SOURCE.name} with {command[0]}: {first}")
    return library


def _write_private(path: Path, text: str) -> None:
    """A new file only this user can read (mode 0600, never an existing file or a link)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


@contextlib.contextmanager
def off_command_line(server_config, folder: Path):
    """While the block starts tritonserver: its restricted settings in ``server_config`` (PyTriton's
    ``TritonServerConfig``, a mapping of option name to value) are the placeholder, the real one waits in a private
    file in ``folder`` (which should be private too, e.g. from ``tempfile.mkdtemp``), and this process's environment,
    which PyTriton copies into tritonserver's, preloads the shim. The environment is put back afterwards; the config
    keeps the placeholder, as the started server's command line does."""
    settings = {key: server_config[key] for key in RESTRICTED_KEYS if key in server_config}
    if not settings:  # PyTriton was told to restrict nothing: no token to hide
        yield
        return
    if len(set(settings.values())) != 1:
        raise M2FError("m2f serve expects one access-token setting for HTTP and gRPC; PyTriton gave two")
    library = build_shim(folder)
    setting_file = Path(folder) / SETTING_NAME
    _write_private(setting_file, next(iter(settings.values())))
    for key in settings:
        server_config[key] = PLACEHOLDER
    saved = {name: os.environ.get(name) for name in ("LD_PRELOAD", FILE_VARIABLE, PRELOAD_VARIABLE)}
    preload_before = saved["LD_PRELOAD"] or ""
    os.environ.update({"LD_PRELOAD": f"{library}:{preload_before}" if preload_before else str(library),
                       FILE_VARIABLE: str(setting_file), PRELOAD_VARIABLE: preload_before})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        setting_file.unlink(missing_ok=True)  # the shim deleted it, unless tritonserver never started
