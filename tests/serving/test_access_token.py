"""The served model's access token stays off tritonserver's command line (serving/access_token.py, token_shim.c).

The shim is built with the machine's C compiler and preloaded into a real process (``/bin/sh``, whose ``$1`` is the
argv entry the shim rewrites, and PyTriton's real ``tritonserver``); what another user could read is taken from
``/proc`` as they would read it."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from m2f.errors import M2FError
from m2f.serving import access_token
from m2f.serving.access_token import FILE_VARIABLE, PLACEHOLDER, PRELOAD_VARIABLE

SECRET = "model-repository,logging:triton-access-token=not-a-real-token-0123456789"
# prints what the shell got as $1, what /proc shows as its command line, and its child's environment
SHELL_SCRIPT = 'printf "%s\\n" "$1"; tr "\\0" " " < /proc/$$/cmdline; echo; env'

pytestmark = pytest.mark.skipif(not Path("/proc/self/cmdline").exists() or shutil.which("cc") is None
                                and shutil.which("gcc") is None, reason="needs Linux /proc and a C compiler")


@pytest.fixture(scope="module")
def shim(tmp_path_factory):
    return access_token.build_shim(tmp_path_factory.mktemp("shim"))


def run_shell(shim: Path, setting_file: Path, preload_before: str = "") -> list[str]:
    env = {"PATH": os.environ["PATH"], "LD_PRELOAD": str(shim), FILE_VARIABLE: str(setting_file),
           PRELOAD_VARIABLE: preload_before}
    done = subprocess.run(["/bin/sh", "-c", SHELL_SCRIPT, "sh", PLACEHOLDER], env=env, capture_output=True,
                          text=True, timeout=30, check=True)
    return done.stdout.splitlines()


def test_the_shim_swaps_the_setting_in_before_main_and_hides_it(shim, tmp_path):
    setting_file = tmp_path / "setting"
    setting_file.write_text(SECRET + "\n")
    got, cmdline, *child_env = run_shell(shim, setting_file)
    assert got == SECRET  # the program sees the real setting ...
    assert PLACEHOLDER in cmdline and SECRET not in cmdline  # ... /proc shows the placeholder
    assert not setting_file.exists()  # read once, then deleted
    assert not [v for v in child_env if v.startswith(("LD_PRELOAD=", FILE_VARIABLE, PRELOAD_VARIABLE))]


def test_the_shim_restores_an_earlier_preload_for_children(shim, tmp_path):
    setting_file = tmp_path / "setting"
    setting_file.write_text(SECRET)
    _, _, *child_env = run_shell(shim, setting_file, preload_before="libearlier.so")
    assert "LD_PRELOAD=libearlier.so" in child_env


def test_without_the_file_the_placeholder_stays(shim, tmp_path):
    got, _, *_ = run_shell(shim, tmp_path / "missing")
    assert got == PLACEHOLDER


def test_tritonserver_refuses_an_unswapped_placeholder(tmp_path):
    """A failed swap cannot leave a server running with a known token: the placeholder is not a valid setting."""
    pytest.importorskip("pytriton", reason="needs nvidia-pytriton's tritonserver (pip install 'm2f[serve]')")
    from pytriton.utils.distribution import get_libs_path

    from m2f.serving.local_triton import _distribution, free_ports

    binary = _distribution()[0]
    http, grpc, metrics = free_ports(3)
    env = {**os.environ, "LD_LIBRARY_PATH": str(get_libs_path())}
    done = subprocess.run([str(binary), f"--model-repository={tmp_path}", f"--http-port={http}",
                           f"--grpc-port={grpc}", f"--metrics-port={metrics}", "--http-address=127.0.0.1",
                           "--http-restricted-api", PLACEHOLDER], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode != 0
    assert f"option format is '<config name>:<setting>=<value>'. Got {PLACEHOLDER}" in done.stdout + done.stderr


def test_a_missing_compiler_is_one_sentence(monkeypatch, tmp_path):
    monkeypatch.setenv("CC", "/nonexistent/cc")
    with pytest.raises(M2FError, match=r"keeps the server's access token off its command line, and "
                                       r"CC='/nonexistent/cc' is not an executable: install one"):
        access_token.build_shim(tmp_path)
    assert not list(tmp_path.iterdir())


def test_a_compiler_named_with_flags_builds_the_shim(monkeypatch, tmp_path):
    compiler = shutil.which("cc") or shutil.which("gcc")
    monkeypatch.setenv("CC", f"{compiler} -Wall")
    assert access_token.build_shim(tmp_path).is_file()


def test_the_environment_is_put_back_and_the_file_removed(tmp_path, monkeypatch):
    monkeypatch.setenv("LD_PRELOAD", "libearlier.so")
    monkeypatch.delenv(FILE_VARIABLE, raising=False)
    config = {"http-restricted-api": SECRET, "grpc-restricted-protocol": SECRET, "http-port": 8000}
    with access_token.off_command_line(config, tmp_path):
        assert config == {"http-restricted-api": PLACEHOLDER, "grpc-restricted-protocol": PLACEHOLDER,
                          "http-port": 8000}
        setting_file = Path(os.environ[FILE_VARIABLE])
        assert setting_file.read_text() == SECRET and setting_file.stat().st_mode & 0o777 == 0o600
        assert os.environ["LD_PRELOAD"] == f"{tmp_path / access_token.SHIM_NAME}:libearlier.so"
        assert os.environ[PRELOAD_VARIABLE] == "libearlier.so"
    assert os.environ["LD_PRELOAD"] == "libearlier.so"
    assert FILE_VARIABLE not in os.environ and PRELOAD_VARIABLE not in os.environ
    assert not setting_file.exists()
