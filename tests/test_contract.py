"""The metadata type of m2f.contract: format-1 documents (as m2f 0.1 wrote them, tests/data/metadata_v1.json) read
and migrate, documents round-trip, and every way a document can be wrong is one sentence naming the key."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from m2f import contract
from m2f.errors import MetadataError

V1 = Path(__file__).parent / "data" / "metadata_v1.json"


def _v1() -> dict:
    return json.loads(V1.read_text())


def test_a_format_1_document_reads_as_the_typed_metadata():
    meta = contract.parse(V1.read_text(), "old.onnx")
    assert meta.format_version == contract.FORMAT_VERSION == 2
    assert meta.input.kind == "uint8" and meta.input.canvas == (192, 256) and meta.input.batch == 1
    assert meta.resize == contract.Resize(short=192, max=320)
    assert meta.thresholds.object_mask == 0.8 and meta.op_flavor == "m2f"
    assert [p.name for p in meta.plugins] == ["M2fMSDeformAttn", "M2fMaskedAttention"]
    assert meta.class_names == tuple(_v1()["class_names"]) and meta.thing_source == contract.THINGS_FROM_CONFIG


def test_format_1_without_thing_source_and_no_things_means_every_class():
    old = _v1()
    del old["thing_source"]
    old["thing_ids"] = []  # how m2f 0.1 wrote an unknown dataset before thing_source existed
    meta = contract.parse(json.dumps(old), "old.onnx")
    assert meta.thing_ids == tuple(range(old["num_classes"])) and meta.thing_source == contract.THINGS_DEFAULT


def test_round_trip_and_frozen():
    meta = contract.parse(V1.read_text(), "m.onnx")
    again = contract.parse(meta.to_json(), "again")
    assert again == meta
    with pytest.raises(dataclasses.FrozenInstanceError):
        meta.precision = "fp16"  # type: ignore[misc]
    assert isinstance(dataclasses.replace(meta, class_names=list(meta.class_names)).class_names, tuple)


@pytest.mark.parametrize("change,message", [
    (lambda d: d.update(colour="red"), "m.onnx's m2f metadata has the unknown key 'colour'; re-export it with m2f"),
    (lambda d: d["input"].update(order="nhwc"), "has the unknown key 'input.order'"),
    (lambda d: d.pop("num_queries"), "lacks the key 'num_queries'"),
    (lambda d: d["resize"].pop("short"), "lacks the key 'resize.short'"),
    (lambda d: d.update(num_classes="8"), "has num_classes = '8', which is not a whole number"),
    (lambda d: d.update(thing_ids=[0, "1"]), r"has thing_ids\[1\] = '1', which is not a whole number"),
    (lambda d: d.update(precision="int4"), "has precision 'int4', which is not one of fp32, fp16, int8, best"),
    (lambda d: d.update(tasks=["detection"]), "has tasks 'detection'"),
    (lambda d: d.update(class_names=["a"]), "names 1 classes for num_classes 8"),
    (lambda d: d.update(thing_ids=[9]), "has thing_ids outside 0..7"),
    (lambda d: d.update(format_version=3), "has m2f metadata format 3; this m2f reads formats 1 to 2"),
    (lambda d: d.update(input=[1, 2]), "has input that is not a JSON object"),
])
def test_every_defect_is_one_sentence_naming_it(change, message):
    document = _v1()
    change(document)
    with pytest.raises(MetadataError, match=message) as caught:
        contract.parse(json.dumps(document), "m.onnx")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("text,message", [(None, "carries no m2f metadata"), ("{", "unreadable m2f metadata"),
                                          ("[]", "not a JSON object")])
def test_missing_or_unreadable_documents(text, message):
    with pytest.raises(MetadataError, match=message):
        contract.parse(text, "m.onnx")


def test_an_inconsistent_record_cannot_be_made():
    meta = contract.parse(V1.read_text(), "m.onnx")
    with pytest.raises(MetadataError, match="names 2 classes for num_classes 8"):
        dataclasses.replace(meta, class_names=("a", "b"))
