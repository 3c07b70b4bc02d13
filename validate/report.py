"""Writing a ParityReport: ``report.json`` (every number), ``report.md`` (tables) and ``report.html`` (one
self-contained file: tables plus embedded PNG plots of the error histograms, the per-stage drift and the worst
images as PyTorch / backend / difference triptychs). Plots need matplotlib (the ``validate`` extra)."""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np

from m2f.fileio import write_json, write_text

from .compare import HIST_EDGES
from .parity import BackendReport, ParityReport

METRICS = ("PQ", "PQ_things", "PQ_stuff", "SQ", "RQ", "AP", "AP50", "mIoU")


def to_dict(report: ParityReport) -> dict:
    def backend(b: BackendReport) -> dict:
        return {
            "model": b.model, "runner": b.runner, "precision": b.precision, "flavor": b.flavor,
            "passed": b.passed, "checks": [{"rule": c.rule, "value": c.value, "failed": c.failed} for c in b.checks],
            "scores": b.scores, "pytorch_scores": b.reference_scores, "agreement_with_pytorch": b.agreement,
            "infer_ms": round(b.infer_ms, 3),
            "outputs": {n: c.to_dict() for n, c in b.outputs.items()},
            "stages": [{"stage": s, "drift": d} for s, d in b.stages], "first_drift": b.first_drift,
            "stage_tolerance": b.stage_tolerance, "taps": {n: c.to_dict() for n, c in b.taps.items()},
            "worst_images": [{"index": w.index, "name": w.name, "disagreement": w.disagreement} for w in b.worst],
            "notes": b.notes}

    return {"reference": report.reference, "data": report.data, "images": report.images,
            "tensor_images": report.tensor_images,
            "passed": report.passed, "seconds": round(report.seconds, 1), "histogram_log10_edges": HIST_EDGES.tolist(),
            "backends": [backend(b) for b in report.backends]}


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-2 or abs(value) >= 1e4 else f"{value:.{digits}f}"
    return str(value)


def _tables(report: ParityReport) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of every table, shared by the Markdown and HTML writers."""
    tables = []
    rows = []
    for b in report.backends:
        if b.scores:
            rows.append([f"{report.reference} on the inputs of {Path(b.model).name}"] +
                        [_fmt(b.reference_scores.get(m), 2) for m in METRICS])
            rows.append([f"{b.runner} {b.precision} ({Path(b.model).name})"] +
                        [_fmt(b.scores.get(m), 2) for m in METRICS])
    if rows:
        tables.append(("Task metrics against the ground truth", ["backend", *METRICS], rows))
    rows = [[f"{b.runner} {b.precision} ({Path(b.model).name})", _fmt(b.agreement.get("panoptic_pq"), 2),
             _fmt(b.agreement.get("panoptic_pixels"), 5), _fmt(b.agreement.get("semantic_pixels"), 5),
             _fmt(b.agreement.get("instance_mask_iou"), 4), _fmt(b.infer_ms, 3)] for b in report.backends]
    tables.append(("Agreement with PyTorch (task results)",
                   ["backend", "panoptic PQ vs PyTorch", "panoptic pixels", "semantic pixels",
                    "instance mask IoU", "infer ms/image"], rows))
    for b in report.backends:
        rows = [[n, _fmt(c.max_abs), _fmt(c.mean_abs), _fmt(c.p99_abs), _fmt(c.max_rel), _fmt(c.cosine, 7),
                 _fmt(c.mismatch), str(c.nan + c.inf), _fmt(c.mask_iou, 4), _fmt(c.top1, 4)]
                for n, c in b.outputs.items()]
        if rows:
            tables.append((f"Outputs of {Path(b.model).name} vs PyTorch ({report.tensor_images} images)",
                           ["output", "max abs", "mean abs", "p99 abs", "max rel", "cosine", "mismatch",
                            "NaN/Inf", "mask IoU", "top-1"], rows))
        if b.stages:
            rows = [[s, _fmt(d), "drifts" if d > b.stage_tolerance else "ok"] for s, d in b.stages]
            tables.append((f"Stages of {Path(b.model).name} (drift = max abs error / max abs reference; tolerance "
                           f"{b.stage_tolerance:g})", ["stage", "drift", ""], rows))
        rows = [[c.rule, _fmt(c.value), "FAILED" if c.failed else ("n/a" if c.value is None else "ok")]
                for c in b.checks]
        tables.append((f"Checks of {Path(b.model).name}", ["rule", "value", "result"], rows))
    return tables


def markdown(report: ParityReport) -> str:
    lines = [f"# m2f validate: {'PASSED' if report.passed else 'FAILED'}", "",
             f"Reference: {report.reference}; data: {report.data} ({report.images} images; tensors compared on "
             f"the first {report.tensor_images}).", ""]
    for b in report.backends:
        verdict = "passed" if b.passed else "FAILED: " + ", ".join(c.rule for c in b.checks if c.failed)
        where = f"; first stage to drift: **{b.first_drift}**" if b.first_drift else \
            ("; no stage drifts" if b.stages else "")
        lines.append(f"- `{b.model}` ({b.runner}, {b.precision}, {b.flavor} ops): {verdict}{where}")
        lines += [f"  - note: {n}" for n in b.notes]
    for title, header, rows in _tables(report):
        lines += ["", f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _pyplot():
    from m2f.errors import require

    matplotlib = require("matplotlib", "validate", "the plots of report.html")
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    _pyplot().close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _histograms(b: BackendReport) -> str:
    fig, ax = _pyplot().subplots(figsize=(7, 3))
    centers = (HIST_EDGES[:-1] + HIST_EDGES[1:]) / 2
    for name, c in b.outputs.items():
        if sum(c.histogram):
            ax.plot(centers, np.asarray(c.histogram) / sum(c.histogram), drawstyle="steps-mid", label=name)
    ax.set_xlabel("log10 |backend - PyTorch|")
    ax.set_ylabel("fraction of elements")
    ax.legend(fontsize=7)
    ax.set_title("error histograms per output")
    return _png(fig)


def _drift_plot(b: BackendReport) -> str:
    fig, ax = _pyplot().subplots(figsize=(8, 3))
    names = [s for s, _ in b.stages]
    drifts = [max(d, 1e-12) for _, d in b.stages]
    colors = ["tab:red" if d > b.stage_tolerance else "tab:blue" for d in drifts]
    ax.bar(range(len(names)), drifts, color=colors)
    ax.axhline(b.stage_tolerance, color="k", linestyle="--", linewidth=1, label=f"tolerance {b.stage_tolerance:g}")
    ax.set_yscale("log")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("drift")
    ax.legend(fontsize=7)
    ax.set_title("per-stage drift (max abs error / max abs PyTorch)")
    return _png(fig)


def _triptych(worst, names: list[str]) -> str:
    """PyTorch overlay | backend overlay | difference (pixels whose class differs, in red)."""
    from m2f.runtime.formats import overlay
    from m2f.runtime.results import Result, Segment

    from .parity import _category_map

    def as_result(pred):
        h, w = worst.image.shape[:2]
        segments = [Segment(s["id"], s["category_id"], names[s["category_id"]], s.get("isthing", False), 0)
                    for s in (pred.segments or [])]
        return Result(h, w, semantic=pred.semantic, panoptic=pred.panoptic, segments=segments)

    task = "panoptic" if worst.reference.panoptic is not None else "semantic"
    panels = [overlay(worst.image, as_result(p), names, task)[:, :worst.image.shape[1]]
              for p in (worst.reference, worst.backend)]
    if task == "panoptic":
        differ = _category_map(worst.reference) != _category_map(worst.backend)
    else:
        differ = worst.reference.semantic != worst.backend.semantic
    diff = (worst.image * 0.35).astype(np.uint8)
    diff[differ] = (255, 40, 40)
    gap = np.full((worst.image.shape[0], 6, 3), 255, np.uint8)
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.concatenate([panels[0], gap, panels[1], gap, diff], 1)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def html_page(report: ParityReport, class_names: list[str]) -> str:
    esc = html.escape
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>m2f validate</title><style>"
             "body{font-family:sans-serif;margin:24px;max-width:1200px}table{border-collapse:collapse;margin:8px 0}"
             "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:right}th{background:#f3f3f3}"
             "td:first-child,th:first-child{text-align:left}.bad{color:#b00;font-weight:bold}.ok{color:#070}"
             "img{max-width:100%}</style></head><body>",
             f"<h1>m2f validate: <span class='{'ok' if report.passed else 'bad'}'>"
             f"{'PASSED' if report.passed else 'FAILED'}</span></h1>",
             f"<p>Reference: {esc(report.reference)}; data: {esc(report.data)} ({report.images} images; tensors "
             f"compared on the first {report.tensor_images}).</p><ul>"]
    for b in report.backends:
        verdict = "passed" if b.passed else "FAILED: " + ", ".join(c.rule for c in b.checks if c.failed)
        drift = f"; first stage to drift: <b>{esc(b.first_drift)}</b>" if b.first_drift else ""
        parts.append(f"<li><code>{esc(b.model)}</code> ({b.runner}, {b.precision}, {esc(b.flavor)} ops): "
                     f"<span class='{'ok' if b.passed else 'bad'}'>{esc(verdict)}</span>{drift}</li>")
    parts.append("</ul>")
    for title, header, rows in _tables(report):
        parts.append(f"<h2>{esc(title)}</h2><table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>")
        for row in rows:
            cells = "".join(f"<td class='{'bad' if v in ('FAILED', 'drifts') else ''}'>{esc(v)}</td>" for v in row)
            parts.append(f"<tr>{cells}</tr>")
        parts.append("</table>")
    for b in report.backends:
        parts.append(f"<h2>Plots of {esc(Path(b.model).name)}</h2>")
        if b.outputs:
            parts.append(f"<img alt='error histograms' src='data:image/png;base64,{_histograms(b)}'>")
        if b.stages:
            parts.append(f"<img alt='per-stage drift' src='data:image/png;base64,{_drift_plot(b)}'>")
        if b.worst:
            parts.append("<h3>Images where the backend differs most (PyTorch | backend | difference in red)</h3>")
            for w in b.worst:
                parts.append(f"<p>{esc(w.name)}: {100 * w.disagreement:.3f} % of pixels differ</p>"
                             f"<img alt='{esc(w.name)}' src='data:image/png;base64,{_triptych(w, class_names)}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(report: ParityReport, out: Path, class_names: list[str]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "report.json", out / "report.md", out / "report.html"]
    write_json(paths[0], to_dict(report))
    write_text(paths[1], markdown(report))
    write_text(paths[2], html_page(report, class_names))
    return paths
