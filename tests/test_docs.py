"""The documentation lives in the repository: every reference from code or docs to a doc, test, benchmark or tool
file resolves to a file here, nothing points at files outside it, and the metadata schema page names every key."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from m2f import contract

ROOT = Path(__file__).resolve().parents[1]
TEXT_SUFFIXES = {".py", ".md", ".cpp", ".h", ".c", ".in", ".sh", ".txt", ".toml", ".yaml"}
OUTSIDE = re.compile(r"design\.md|tensorrt-api\.md|mask2former-semantics|\breference §|\.\./shared/reference")
REPO_PATH = re.compile(r"\b((?:docs|tests|benchmarks|tools)/[\w./-]+\.(?:md|py|sh|json|npz|pth|yaml))\b")


def _texts():
    for path in ROOT.rglob("*"):
        if path.is_file() and path.suffix in TEXT_SUFFIXES and ".git" not in path.parts \
                and "egg-info" not in str(path) and "__pycache__" not in path.parts:
            yield path, path.read_text(errors="replace")


def test_no_reference_points_outside_the_repository():
    outside = [f"{p.relative_to(ROOT)}: {m.group(0)}" for p, text in _texts() for m in OUTSIDE.finditer(text)
               if p.name != "test_docs.py"]
    assert not outside, outside


EXTERNAL = ("onnx-tensorrt", "fvcore")  # their own docs/ and tools/ paths, named with the project


def test_every_referenced_file_exists():
    missing = sorted({f"{p.relative_to(ROOT)} -> {m.group(1)}" for p, text in _texts()
                      for m in REPO_PATH.finditer(text) if not (ROOT / m.group(1)).exists()
                      and "*" not in m.group(1) and not any(e in text[max(0, m.start() - 60):m.start()]
                                                            for e in EXTERNAL)})
    assert not missing, missing


def test_docs_cite_sections_that_exist():
    """'docs/model.md §2' needs a heading numbered 2 in docs/model.md."""
    headings = {}
    for doc in (ROOT / "docs").glob("*.md"):
        headings[doc.name] = set(re.findall(r"^#+ (\d+(?:\.\d+)*)\.? ", doc.read_text(), re.M))
    bad = sorted({f"{p.relative_to(ROOT)}: {m.group(0)}" for p, text in _texts()
                  for m in re.finditer(r"docs/(\w+\.md) §(\d+(?:\.\d+)*)", text)
                  if m.group(2) not in headings.get(m.group(1), set())})
    assert not bad, bad


def _keys(record, prefix: str = "") -> list[str]:
    """Every key of a metadata record, dotted, descending into nested records."""
    import typing

    keys = []
    for f in dataclasses.fields(record):
        hint = typing.get_type_hints(record)[f.name]
        nested = [a for a in (typing.get_args(hint) or (hint,)) if isinstance(a, type)
                  and dataclasses.is_dataclass(a)]
        nested += [a for arg in typing.get_args(hint) for a in typing.get_args(arg)
                   if isinstance(a, type) and dataclasses.is_dataclass(a)]
        if nested:
            keys += _keys(nested[0], f"{prefix}{f.name}.")
        else:
            keys.append(f"{prefix}{f.name}")
    return keys


def _documented_keys(page: str) -> set[str]:
    """The keys in the first column of the page's table: `a.b`, `c`, `.d` (d beside the previous key's parent);
    `[]` marks a list of records."""
    keys = set()
    for line in page.splitlines():
        if not line.startswith("| `"):
            continue
        previous = ""
        for entry in re.findall(r"`([^`]+)`", line.split("|")[1]):
            entry = entry.replace("[]", "")
            if entry.startswith(".") and previous:
                entry = previous.rsplit(".", 1)[0] + entry
            keys.add(entry)
            previous = entry
    return keys


def test_the_metadata_page_names_every_key():
    page = (ROOT / "docs" / "metadata.md").read_text()
    undocumented = sorted(set(_keys(contract.Metadata)) - _documented_keys(page))
    assert not undocumented, undocumented
    assert f"| `format_version` | int | yes | {contract.FORMAT_VERSION} " in page
