"""User-facing errors are M2FErrors (one sentence, exit 2 from the CLI), never a trace from deep inside."""
import subprocess
import sys

import numpy as np
import pytest

from m2f.cli import main
from m2f.errors import ArgumentError, ConfigError, M2FError


def _one_sentence(capsys, prefix: str) -> str:
    err = capsys.readouterr().err
    assert err.startswith(prefix) and err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("content", [b"", b"hello, this is not a checkpoint\n", b"\x80\x02}q\x00."])
def test_empty_or_text_pth_is_one_sentence(tmp_path, capsys, content):
    path = tmp_path / "model.pth"
    path.write_bytes(content)
    assert main(["inspect", str(path)]) == 2
    err = _one_sentence(capsys, "m2f inspect: error: ")
    assert "model.pth" in err


def test_invalid_config_values_are_config_errors_on_load(tmp_path, capsys):
    """The bundled weights with a saved config that cannot build a model (a thing id beyond the classes)."""
    torch = pytest.importorskip("torch")
    from m2f.assets import DEFAULT_WEIGHTS

    state = torch.load(DEFAULT_WEIGHTS, weights_only=True)
    state["m2f_config"]["thing_ids"] = [0, 99]
    torch.save(state, tmp_path / "bad.pth")
    assert main(["inspect", str(tmp_path / "bad.pth")]) == 2
    assert "thing ids [99] are outside 0..7" in _one_sentence(capsys, "m2f inspect: error: ")


def test_config_from_a_newer_m2f_is_refused_by_name(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    from m2f.assets import DEFAULT_WEIGHTS

    state = torch.load(DEFAULT_WEIGHTS, weights_only=True)
    state["m2f_config"]["brand_new_field"] = 1
    torch.save(state, tmp_path / "new.pth")
    assert main(["inspect", str(tmp_path / "new.pth")]) == 2
    assert "brand_new_field" in _one_sentence(capsys, "m2f inspect: error: ")


def test_bad_arguments_are_m2f_errors_and_value_errors():
    from m2f.runtime.preprocess import resize_image

    with pytest.raises(ArgumentError, match="resize must be") as info:
        resize_image(np.zeros((4, 4, 3), np.uint8), 2, 2, method="bicubic")
    assert isinstance(info.value, M2FError) and isinstance(info.value, ValueError)
    assert issubclass(ConfigError, M2FError)


def test_presets_without_torch():
    code = "import sys; sys.modules['torch'] = None; from m2f.cli import main; raise SystemExit(main(['presets']))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "coco-panoptic-r50" in r.stdout.split() and "synthetic-r50-lite" in r.stdout.split()
