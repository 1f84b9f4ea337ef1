"""Speed and agreement of the ``precision`` and ``runtime`` settings, in-process, per model.

Each variant is loaded through ``modeldeploy.load`` with its settings (the same conversion the
server does), its cost model calibrated as the server's batcher does, then timed on the same
review texts in windows of ``--window`` arrivals, each window planned into length-grouped
sub-batches by ``ModelWrapper.predict`` (the server's plan for a full round: the "ideal window" of
bench/results.md, through our wrapper). Agreement is measured against fp32 torch on the same
texts, in the terms each task's users care about: labels (classifier), entity spans (NER),
cosine of the unit vectors (the real all-MiniLM-L6-v2 embeddings), unigram overlap of the
summaries. Writes results-precision.md and results-precision.json.

    python bench/precision.py --models-dir bench/.work/models --minilm bench/.work/minilm
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import recording  # noqa: E402
import reviews  # noqa: E402

import onnxruntime  # noqa: E402
import torch  # noqa: E402

import modeldeploy  # noqa: E402
from modeldeploy.batching import calibrate_cost_model, configure_torch_threads  # noqa: E402

BENCH = Path(__file__).parent
VARIANTS = {
    "fp32 torch": {},
    "fp16 torch": {"precision": "fp16"},
    "bf16 torch": {"precision": "bf16"},
    "int8 torch": {"precision": "int8"},
    "fp32 onnxruntime": {"runtime": "onnxruntime"},
    "int8 onnxruntime": {"runtime": "onnxruntime", "precision": "int8"},
}
#: Generation runs on torch only (the runtime setting refuses onnxruntime for it).
TORCH_ONLY = {name: settings for name, settings in VARIANTS.items() if "onnxruntime" not in name}


def label_agreement(results: list[Any], reference: list[Any]) -> dict[str, float]:
    same = sum(a["label"] == b["label"] for a, b in zip(results, reference))
    return {"label_agreement": same / len(reference),
            "mean_score_difference": statistics.fmean(abs(a["score"] - b["score"]) for a, b in zip(results, reference))}


def span_agreement(results: list[Any], reference: list[Any]) -> dict[str, float]:
    """Texts whose entity spans (group, start, end) are all the same, and span F1 over all texts."""
    def spans(entities: list[dict[str, Any]]) -> set[tuple[str, int, int]]:
        return {(e["entity_group"], e["start"], e["end"]) for e in entities}

    found = [spans(r) for r in results]
    expected = [spans(r) for r in reference]
    common = sum(len(a & b) for a, b in zip(found, expected))
    total = sum(len(a) for a in found) + sum(len(b) for b in expected)
    return {"texts_with_identical_spans": sum(a == b for a, b in zip(found, expected)) / len(expected),
            "span_f1": 2 * common / total if total else 1.0}


def cosine_agreement(results: list[Any], reference: list[Any]) -> dict[str, float]:
    cosines = sorted(sum(x * y for x, y in zip(a, b)) for a, b in zip(results, reference))  # unit vectors
    return {"cosine_min": cosines[0], "cosine_p1": cosines[len(cosines) // 100], "cosine_median": statistics.median(cosines)}


def overlap_agreement(results: list[Any], reference: list[Any]) -> dict[str, float]:
    """Unigram F1 of each summary against fp32's (ROUGE-1-like), and identical summaries."""
    def f1(a: str, b: str) -> float:
        left, right = Counter(a.split()), Counter(b.split())
        common = sum((left & right).values())
        return 2 * common / (sum(left.values()) + sum(right.values())) if left or right else 1.0

    pairs = [(a["summary_text"], b["summary_text"]) for a, b in zip(results, reference)]
    return {"unigram_f1_mean": statistics.fmean(f1(a, b) for a, b in pairs),
            "identical": sum(a == b for a, b in pairs) / len(pairs)}


#: model -> (source folder option, variants, how agreement is measured, texts by default)
MODELS: dict[str, tuple[str | None, dict[str, dict[str, str]], Callable[..., dict[str, float]], int]] = {
    "sentiment": ("minilm", VARIANTS, label_agreement, 512),
    "embeddings": (None, VARIANTS, cosine_agreement, 512),
    "ner": ("models", VARIANTS, span_agreement, 192),
    "summarization": ("models", TORCH_ONLY, overlap_agreement, 48),
}


def windows_throughput(wrapper: Any, texts: list[str], window: int) -> tuple[float, list[Any]]:
    """Items/s over ``texts`` in windows of ``window`` arrivals (each planned by ``predict``), with
    the results; the best of two passes after a warm-up pass."""
    wrapper.predict(texts[:window])
    best, results = 0.0, []
    for _ in range(2):
        started = time.perf_counter()
        results = [result for start in range(0, len(texts), window) for result in wrapper.predict(texts[start:start + window])]
        best = max(best, len(texts) / (time.perf_counter() - started))
    return best, results


def measure(model: str, source: str | None, variants: dict[str, dict[str, str]],
            agreement: Callable[..., dict[str, float]], texts: list[str], window: int,
            device: str = "cpu") -> dict[str, Any]:
    rows: dict[str, Any] = {}
    reference: list[Any] = []
    for name, settings in variants.items():
        started = time.perf_counter()
        try:
            wrapper = modeldeploy.load(model, source, device=device, settings=settings)
        except modeldeploy.ModelDeployError as exc:  # recorded, not hidden: the setting's own refusal
            rows[name] = {"refused": str(exc)}
            print(f"{model} {name}: refused: {exc}", flush=True)
            continue
        load_seconds = time.perf_counter() - started
        wrapper.cost_model = calibrate_cost_model(wrapper)
        items_per_s, results = windows_throughput(wrapper, texts, window)
        if not reference:
            reference = results
        rows[name] = {"settings": settings, "load_seconds": load_seconds, "items_per_s": items_per_s,
                      **agreement(results, reference)}
        print(f"{model} {name}: {json.dumps(rows[name])}", flush=True)
        del wrapper
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    fp32 = rows["fp32 torch"]["items_per_s"]
    for row in rows.values():
        if "items_per_s" in row:
            row["speedup"] = row["items_per_s"] / fp32
    return rows


def report(results: dict[str, Any]) -> str:
    machine = results["machine"]
    lines = ["# Precision and runtime: speed and agreement with fp32", "",
             f"Produced by `{results['command']}` on {results['date']}. Machine: {machine}.", "",
             f"Each variant loaded with `modeldeploy.load(..., settings=...)`, its cost model calibrated as the server "
             f"does, then timed in-process on {results['texts']} texts of bench/reviews.py (the long-tail reviews; "
             f"summarization on its first {results['models'].get('summarization', {}).get('texts', '-')}) in windows "
             f"of {results['window']} arrivals, each planned into length-grouped sub-batches: the server's plan for a "
             "full round. Best of two passes after a warm-up. Agreement is against fp32 torch on the same texts.", ""]
    for model, entry in results["models"].items():
        rows = entry["variants"]
        metrics = sorted({key for row in rows.values() for key in row
                          if key not in {"settings", "load_seconds", "items_per_s", "speedup", "refused"}})
        lines += [f"## {model}", "", f"Source: {entry['source']}; {entry['texts']} texts.", "",
                  "| variant | items/s | x fp32 | load s | " + " | ".join(metrics) + " |",
                  "|---" * (4 + len(metrics)) + "|"]
        for name, row in rows.items():
            if "refused" in row:
                lines.append(f"| {name} | refused: {row['refused']} |" + " |" * (3 + len(metrics)))
                continue
            lines.append(f"| {name} | {row['items_per_s']:.1f} | {row['speedup']:.2f} | {row['load_seconds']:.1f} | "
                         + " | ".join(f"{row[m]:.4f}" for m in metrics) + " |")
        lines.append("")
    lines += target_lines(results)
    return "\n".join(lines) + "\n"


def target_lines(results: dict[str, Any]) -> list[str]:
    """Issue 15's target: >= 1.5 x the fp32 ideal window for the classifier with >= 99 % label agreement."""
    rows = results["models"].get("sentiment", {}).get("variants", {})
    candidates = [(name, row) for name, row in rows.items() if "items_per_s" in row and name != "fp32 torch"]
    met = [(name, row) for name, row in candidates if row["speedup"] >= 1.5 and row["label_agreement"] >= 0.99]
    lines = ["## Target", "", "| target | measured | met |", "|---|---|---|"]
    for name, row in candidates:
        ok = (name, row) in met
        lines.append(f"| classifier {name}: >= 1.5 x fp32 with >= 99 % label agreement | "
                     f"{row['speedup']:.2f} x, {100 * row['label_agreement']:.1f} % | {'yes' if ok else 'no'} |")
    return lines + [""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models-dir", type=Path, default=BENCH / ".work" / "models",
                        help="base-size NER and summarization (python -m modeldeploy.testing build DIR --size base)")
    parser.add_argument("--minilm", type=Path, default=BENCH / ".work" / "minilm", help="bench/minilm.py's classifier")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--texts", type=int, default=0, help="texts per model (0: each model's default)")
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--out", type=Path, default=BENCH)
    parser.add_argument("--device", default="cpu",
                        help="cpu, cuda or auto (int8 and onnxruntime are CPU-only: on a GPU their rows say why)")
    args = parser.parse_args(argv)
    threads = configure_torch_threads(0)
    machine = f"{recording.machine(args.device)}, torch {torch.__version__} ({threads} intra-op threads), onnxruntime {onnxruntime.__version__}"
    results: dict[str, Any] = {"machine": machine, "date": datetime.date.today().isoformat(),
                               "window": args.window, "models": {},
                               "command": "python bench/precision.py" + (f" --models {args.models}" if args.models != ",".join(MODELS) else "")
                                          + (f" --device {args.device}" if args.device != "cpu" else ""),
                               "texts": args.texts or MODELS["sentiment"][3]}
    for model in args.models.split(","):
        folder, variants, agreement, default_count = MODELS[model]
        source = {None: None, "minilm": str(args.minilm), "models": str(args.models_dir / model)}[folder]
        texts = reviews.reviews(args.texts or default_count, seed=7)
        label = {None: "the plugin's default (all-MiniLM-L6-v2 from PyPI)", "minilm": "bench/minilm.py's classifier",
                 "models": "modeldeploy.testing base-size model"}[folder]
        results["models"][model] = {"source": label, "texts": len(texts),
                                    "variants": measure(model, source, variants, agreement, texts, args.window,
                                                        args.device)}
    args.out.mkdir(parents=True, exist_ok=True)
    recording.save(args.out / "results-precision", results, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
