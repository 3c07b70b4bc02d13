"""Every option of every command, fed values it must refuse: walked from the argparse definitions themselves, so a new
option is covered the day it is added (and an option whose type this table does not know fails the walk). Each bad
value ends in one line on stderr naming the option, exit status 2, no traceback and no file written."""
from __future__ import annotations

import argparse

import pytest

from m2f.cli.main import build_parser, main

# bad values per argument type (by the type function's name; number_in types by their kind)
BAD_VALUES = {
    "positive_int": ["0", "-3", "2.5", "abc", ""],
    "non_negative_int": ["-1", "abc"],
    "positive_float": ["0", "-1", "nan", "inf", "abc"],
    "probability": ["1.5", "-0.1", "nan", "abc"],
    "tcp_port": ["0", "70000", "abc"],
    "model_name": ["../evil", "/abs/name", "a b/c", "", ".hidden", "x" * 65],
    "existing_file": ["/nonexistent/libm2f_plugins.so", "."],
    "int_in": ["-1", "nan", "abc", "1e30", "99999999999"],
    "float_in": ["nan", "-1e30", "1e30", "abc"],
    "tensorrt_version": ["abc", "9", "10.x"],
    "_sizes": ["0", "1,-2", "abc", ""],
    "_hw": ["0x0", "800", "axb", "99999x10"],
}
BAD_CHOICE = "no-such-choice"


def _type_key(action) -> str | None:
    name = getattr(action.type, "__name__", None)
    if name is None:
        return None
    for prefix in ("int_in", "float_in"):
        if name.startswith(prefix):
            return prefix
    return name


def _commands(parser, prefix=()):
    """(argv prefix, parser) of every command and sub-command."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*prefix, name))
            return
    yield prefix, parser


def _cases():
    cases, unknown = [], []
    for command, parser in _commands(build_parser()):
        for action in parser._actions:
            if not action.option_strings or isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
                continue
            flag = max(action.option_strings, key=len)
            width = action.nargs if isinstance(action.nargs, int) else 1
            if action.type is not None:
                key = _type_key(action)
                if key not in BAD_VALUES:
                    unknown.append(f"{' '.join(command)} {flag} ({key})")
                    continue
                cases += [pytest.param(command, flag, [value] * width, id=f"{'-'.join(command)}{flag}={value!r}")
                          for value in BAD_VALUES[key]]
            elif action.choices:
                cases.append(pytest.param(command, flag, [BAD_CHOICE] * width, id=f"{'-'.join(command)}{flag}"))
    return cases, unknown


CASES, UNKNOWN = _cases()


def test_every_typed_option_has_bad_values():
    assert UNKNOWN == [], f"options whose type has no bad values in BAD_VALUES: {UNKNOWN}"
    assert len(CASES) > 250  # the walk found the commands (about 90 typed or choice options)


@pytest.mark.parametrize("command,flag,values", CASES)
def test_a_bad_value_is_one_line(command, flag, values, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        main([*command, f"{flag}={values[0]}" if len(values) == 1 else flag, *(values if len(values) > 1 else [])])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert stop.value.code == 2 and len(lines) == 1, err
    assert lines[0].startswith(f"m2f {' '.join(command)}: error: argument ") and flag in lines[0], lines[0]
    assert "Traceback" not in err and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv,message", [
    (["--fail-on", "pq_drop>nan"], "the threshold must be a finite number"),
    (["--fail-on", "pq_drop>abc"], "'abc' is not a number"),
])
def test_validate_rules_are_checked_first(argv, message, tmp_path, capsys):
    assert main(["validate", str(tmp_path / "missing.pth"), str(tmp_path / "m.onnx"), "--data", "synthetic:2",
                 *argv, "-o", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and not (tmp_path / "r").exists()


def test_train_scale_order_is_checked_first(tmp_path, capsys):
    assert main(["train", "--preset", "synthetic-r50-lite", "--data", str(tmp_path), "-o", str(tmp_path / "run"),
                 "--scale", "2", "0.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["m2f train: error: --scale 2 0.5: MIN is above MAX; give the smaller scale first"]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", ["../evil", "/tmp/abs", "a b/c", ""])
def test_a_repository_name_never_leaves_the_folder(name, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["triton-repo", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "repo"), "--model-name", name])
    assert stop.value.code == 2 and "cannot name a served model" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("options,message", [
    ({"http_port": 8000, "grpc_port": 8000}, "must differ"),
    ({"address": "not an address"}, "is not an IP address or a known host name"),
    ({"model_name": "../x"}, "cannot name a served model"),
    ({"metrics_port": 70000}, "is not a TCP port"),
])
def test_serve_options_are_checked_before_starting(options, message):
    from m2f.errors import ArgumentError
    from m2f.serving.server import ServeOptions

    with pytest.raises(ArgumentError, match=message):
        ServeOptions(**options)


@pytest.mark.parametrize("value,message", [("abc", "M2F_THREADS='abc' is not a positive whole number"),
                                           ("-3", "M2F_THREADS='-3' is not a positive whole number")])
def test_threads_variable_is_checked(value, message, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("M2F_THREADS", value)
    assert main(["infer", str(tmp_path / "m.onnx"), str(tmp_path), "-o", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err
