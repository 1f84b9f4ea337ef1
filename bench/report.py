"""results.json -> results.md (machine, method, references, curves, targets, where the time goes)
and curve.png (throughput and latency against concurrency, per model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from breakdown import NATIVE

SERVERS = ("modeldeploy", "modeldeploy-process", "litserve-user", "litserve-wrapper", "baseline")
DESCRIPTIONS = {
    "modeldeploy": "`modeldeploy serve` with a generated config",
    "modeldeploy-process": "the same with `server.engine: process` (the model in a worker process of its own)",
    "litserve-user": "LitServe as its users write it (bench/litserve_user_app.py: plain transformers, one padded "
                     "batch in arrival order)",
    "litserve-wrapper": "LitServe serving our wrapper (bench/litserve_app.py)",
    "baseline": "the original app's way (Flask + waitress, one forward pass per request)",
}
#: The issue's targets: modeldeploy over each reference at the comparison concurrency.
IDEAL_SHARE, USER_RATIO, WRAPPER_RATIO, BATCH1_SLACK_MS = 0.95, 3.0, 1.1, 2.0


def closest(runs: dict[str, Any], concurrency: int) -> str:
    return min(runs, key=lambda c: abs(int(c) - concurrency))


def targets(model: dict[str, Any], compare_at: int) -> list[tuple[str, str, bool]]:
    """(what, measured, met) for each target of the issue."""
    runs, refs = model["runs"], model["references"]
    at = closest(runs["modeldeploy"], compare_at)
    ours = runs["modeldeploy"][at]["items_per_s"]
    ideal = refs["windows"][closest(refs["windows"], int(at))]["ideal_items_per_s"]
    rows = [(f"c={at}: >= {IDEAL_SHARE} x the ideal window", f"{ours:.1f} / {ideal:.1f} = {ours / ideal:.2f} x",
             ours >= IDEAL_SHARE * ideal)]
    for peer, ratio in (("litserve-user", USER_RATIO), ("litserve-wrapper", WRAPPER_RATIO)):
        theirs = runs[peer][at]["items_per_s"]
        rows.append((f"c={at}: >= {ratio:g} x {peer}", f"{ours:.1f} / {theirs:.1f} = {ours / max(theirs, 1e-9):.2f} x",
                     ours >= ratio * theirs))
    lone = runs["modeldeploy"][closest(runs["modeldeploy"], 1)]["p50_ms"]
    batch1 = refs["batch1"]["p50_ms"]
    rows.append((f"c=1: p50 <= in-process batch-1 p50 + {BATCH1_SLACK_MS:g} ms", f"{lone:.1f} vs {batch1:.1f} ms",
                 lone <= batch1 + BATCH1_SLACK_MS))
    return rows


def header(results: dict[str, Any]) -> list[str]:
    m, s = results["machine"], results["settings"]
    measured = [name for name in SERVERS if any(name in model["runs"] for model in results["models"].values())]
    settings = "; ".join(f"{model}: " + ", ".join(f"{k}={v}" for k, v in values.items())
                         for model, values in s["settings"].items()) or "none (each model's defaults)"
    machine = (f"Produced by `{results['command']}` (bench/harness.py) on {m['date']}. Machine: {m['cpu']}, "
               f"{m['cores']} cores, {m['memory_gb']} GiB, Python {m['python']}, torch {m['torch']} "
               f"({m['torch_threads']} intra-op threads); device: {m['device']} ({m['device_name']}). Load average "
               f"(1/5/15 min) before: {_load(m['load_average'])}, after: {_load(m['load_average_after'])} (above "
               f"the benchmark's own ~{m['cores']}, other work shared the machine).")
    method = [
        "How it was taken: for each model, first the in-process references (plain transformers, no HTTP, on the "
        f"first {s['reference_items']} texts of the bodies the load generator sends, in that order; items/s is the "
        "best of two passes after a warm-up pass), then each server started alone, warmed up for "
        f"{s['warmup_seconds']:g} s and driven by `wrk` (closed loop: each connection sends its next request when "
        f"answered) for {s['seconds']:g} s at each concurrency, then stopped.",
        "One review-like text per request (bench/reviews.py: most under 40 words, a few of several hundred; 8 to "
        "512 tokens with a real WordPiece vocabulary, more with the test models' small one).",
        "Servers: " + "; ".join(f"{name}: {DESCRIPTIONS[name]}" for name in measured) + ".",
        f"modeldeploy: max_batch_size {s['max_batch_size']}, max_queue {s['max_queue']}. LitServe as its users "
        f"write it: max_batch_size {s['litserve_batch']}, batch_timeout {s['litserve_timeout']:g} s, as a user "
        "serving a small text model might set them (LitAPI's own example has 8 and 0.1 s, which adds up to 100 ms to "
        "a lone request), not tuned: after each model's targets, other batch sizes are tried. LitServe serving our "
        f"wrapper: max_batch_size {s['max_batch_size']} (modeldeploy's), batch_timeout {s['litserve_timeout']:g} s, "
        "each batch planned by `ModelWrapper.predict` with the cost model calibrated as modeldeploy's batcher does, "
        "so the two differ in the front and in how a round is gathered.",
        f"torch intra-op threads: modeldeploy's choice ({m['torch_threads']}) for every server and reference "
        f"(peers: {s['peer_torch_threads'] or 'torch default'}).",
        f"Model settings given to modeldeploy and the wrapper LitServe serves: {settings}.",
        "CPU ms/request: the server's processes' user + system CPU over the run, per answered request.",
    ]
    return ["# Benchmark results", "", machine, "", "![throughput and latency against concurrency](curve.png)", "",
            " ".join(method), ""]


def references_table(refs: dict[str, Any]) -> list[str]:
    tokens, cost = refs["tokens"], refs["cost"]
    rows = tokens.get("rows", refs["items"])  # a text longer than the model's window is read in several
    extra = rows - refs["items"]
    whole = f"; {extra} extra windows for the texts longer than the model's" if extra > 0 else ""
    lines = [f"In-process references on {refs['items']} texts (tokens: median {tokens['median']:g}, max "
             f"{tokens['max']}, {tokens['over_128']} over 128{whole}):", "",
             "| reference | items/s | p50 ms |", "|---|---|---|",
             f"| batch-1 (each text alone) | {refs['batch1']['items_per_s']:.1f} | {refs['batch1']['p50_ms']:.1f} |"]
    for size, window in refs["windows"].items():
        lines += [f"| arrival order, windows of {size} as one padded batch | {window['arrival_items_per_s']:.1f} | |",
                  f"| ideal window of {size} (sorted, cheapest split: {window['ideal_sub_batches']} sub-batches) | "
                  f"{window['ideal_items_per_s']:.1f} | |"]
    predicted = refs["predicted_ideal_items_per_s"]
    if predicted:
        lines += ["", "The ideal window as the fitted cost prices it (forward passes only, no tokenizing; the "
                  "dotted black curve of the plot), by window size C: "
                  + ", ".join(f"{size}: {v:.1f}/s" for size, v in predicted.items()) + "."]
    lines += ["", f"The ideal window's cost function, fitted to {len(cost['samples'])} timed forward passes "
              f"(median error {cost['median_relative_error']:.0%}): {cost['fixed'] * 1000:.3g} ms + rows x "
              f"({cost['per_row'] * 1000:.3g} ms + {cost['per_token'] * 1e6:.3g} us x tokens + "
              f"{cost['per_token_squared'] * 1e9:.3g} ns x tokens^2).", ""]
    return lines


def curve_table(runs: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["| server | concurrency | items/s | p50 ms | p99 ms | non-200 | CPU ms/request |",
             "|---|---|---|---|---|---|---|"]
    for server in SERVERS:
        for concurrency, run in runs.get(server, {}).items():
            bad = ", ".join(f"{k}: {v}" for k, v in run["statuses"].items() if k != "200") or "0"
            if run["errors"] or run["timeouts"]:
                bad += f"; socket errors {run['errors']}, timeouts {run['timeouts']}"
            lines.append(f"| {server} | {concurrency} | {run['items_per_s']:.1f} | {run['p50_ms']:.1f} | "
                         f"{run['p99_ms']:.1f} | {bad} | {run['cpu_ms_per_request']:.1f} |")
    return lines + [""]


def breakdown_table(result: dict[str, Any], unprofiled: dict[str, Any], server: str = "modeldeploy") -> list[str]:
    lines = [f"Where {server}'s CPU goes, c={result['concurrency']}, {result['seconds']:g} s under py-spy "
             f"(`record --nonblocking --threads --rate {result['rate']}`, sampling every Python thread; each "
             "thread's CPU from /proc split by what its samples were running; see bench/breakdown.py): "
             f"{result['requests']} requests answered ({result['items_per_s']:.1f}/s), "
             f"{result['cpu_ms_per_request']:.1f} ms of CPU each (unprofiled, the curve's run at that concurrency: "
             f"{unprofiled['items_per_s']:.1f}/s, {unprofiled['cpu_ms_per_request']:.1f} ms each).", ""]
    if "front_cpu_ms_per_request" in result:
        lines[-2] += (f" The HTTP front's process: {result['front_cpu_ms_per_request']:.2f} ms of it "
                      f"({result['front_cores']:.2f} cores busy); its child processes (model workers): "
                      f"{result['children_cpu_ms_per_request']:.2f} ms.")
    if result["py_spy"] != "ok":
        return lines + [f"py-spy failed: `{result['py_spy']}`; only the total above was measured.", ""]
    lines += ["| part of the request path | CPU ms/request | share |", "|---|---|---|"]
    lines += [f"| {bucket} | {part['cpu_ms_per_request']:.2f} | {part['share']:.0%} |"
              for bucket, part in result["buckets"].items()]
    threads = ", ".join(f"{group} {ms:.2f} ms" for group, ms in result["threads_cpu_ms_per_request"].items())
    lines += ["", f"CPU per request by thread: {threads}; threads py-spy never saw (native) "
              f"{result['buckets'][NATIVE]['cpu_ms_per_request']:.2f} ms (waitress: the HTTP worker pool; "
              "MainThread: waitress's event loop, which accepts, reads and writes the sockets; "
              "modeldeploy-batcher: the inference thread)."]
    samples = result["samples"]
    waited = samples["waiting"] / max(samples["working"] + samples["waiting"], 1)
    lines += ["", f"Samples: {samples['working']} working, {samples['waiting']} caught waiting ({waited:.0%}: a lock, "
              "a condition, poll; charged no CPU; py-spy skips threads the OS reports asleep)."
              + (" py-spy fell behind its rate (fewer samples, same CPU totals)." if result["lagged"] else ""), ""]
    return lines


def sweep_line(model: dict[str, Any], compare_at: int, batch: int) -> str:
    """LitServe as its users write it with other batch sizes (``batch``: the curve's), against ours,
    at the comparison concurrency."""
    runs = model["runs"]
    at = closest(runs["modeldeploy"], compare_at)
    by_batch = {int(b): run["items_per_s"] for b, run in model["litserve_sweep"].items()}
    by_batch[batch] = runs["litserve-user"][at]["items_per_s"]
    best = max(by_batch, key=by_batch.get)
    return (f"LitServe as its users write it, at c={at} with other max_batch_size values (each server alone): "
            + ", ".join(f"{b}: {v:.1f}/s" for b, v in sorted(by_batch.items()))
            + f". At its best ({best}), modeldeploy serves "
            f"{runs['modeldeploy'][at]['items_per_s'] / by_batch[best]:.2f} x as much (texts of very different "
            "lengths in arrival order pad less in smaller batches).")


def model_section(name: str, model: dict[str, Any], settings: dict[str, Any]) -> list[str]:
    compare_at = settings["compare_at"]
    lines = [f"## {name}", ""]
    head = model.get("classifier_head")
    if head:
        lines += [f"The MiniLM classifier (bench/minilm.py): all-MiniLM-L6-v2 with a head fitted on labelled review "
                  f"sentences, held-out accuracy {head['held_out_accuracy']:.1%}, median |logit margin| on the "
                  f"benchmark reviews {head['median_margin_on_reviews']:.2f}.", ""]
    if model["options"]["generation"]:
        lines += [f"Generation (the plugin's, for every server and reference): `{model['options']['generation']}`.", ""]
    if model["options"].get("stride") is not None:
        lines += [f"A text longer than the model's window is read whole, in overlapping windows "
                  f"({model['options']['stride']} tokens shared), by every server and reference, as the plugin "
                  "reads it (truncating it instead would do less work and miss the entities past its first window).",
                  ""]
    lines += references_table(model["references"]) + curve_table(model["runs"])
    lines += ["| target | measured | met |", "|---|---|---|"]
    lines += [f"| {what} | {measured} | {'yes' if met else '**no**'} |"
              for what, measured, met in targets(model, compare_at)]
    if model.get("litserve_sweep"):
        lines += ["", sweep_line(model, compare_at, settings["litserve_batch"])]
    memory = ", ".join(f"{k} {v:.0f} MB" for k, v in model["peak_memory_mb"].items())
    lines += ["", f"Peak memory (all processes of each server): {memory}.", ""]
    for key, server in (("breakdown", "modeldeploy"), ("breakdown_process", "modeldeploy-process")):
        if key in model:
            profiled, runs = model[key], model["runs"][server]
            lines += breakdown_table(profiled, runs[closest(runs, profiled["concurrency"])], server)
    if "threads_check" in model:
        conditions = {"quiet": "on the quiet machine", "one_core_busy": "with one core kept busy by another process"}
        lines += [f"torch intra-op threads, modeldeploy at c={compare_at}, back to back: " + "; ".join(
            f"{conditions[condition]}: " + ", ".join(f"{t} thread(s) {r['items_per_s']:.1f} items/s" for t, r in
                                                     runs.items())
            for condition, runs in model["threads_check"].items()) + ".", ""]
    return lines


def write(results: dict[str, Any], out: Path) -> None:
    lines = header(results)
    for name, model in results["models"].items():
        lines += model_section(name, model, results["settings"])
    (out / "results.md").write_text("\n".join(lines) + "\n")
    plot(results, out / "curve.png")


def _load(values: list[float]) -> str:
    return " / ".join(f"{v:.1f}" for v in values)


def plot(results: dict[str, Any], path: Path) -> None:
    """Per model a row: throughput against concurrency (the references as dashed lines), and p50
    (solid) and p99 (dotted) latency against concurrency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models, compare_at = results["models"], results["settings"]["compare_at"]
    fig, axes = plt.subplots(len(models), 2, figsize=(12, 4.2 * len(models)), squeeze=False)
    for row, (name, model) in enumerate(models.items()):
        throughput, latency = axes[row]
        refs = model["references"]
        window = refs["windows"][closest(refs["windows"], compare_at)]
        size = closest(refs["windows"], compare_at)
        for server in SERVERS:
            runs = model["runs"].get(server)
            if not runs:
                continue
            xs = [int(c) for c in runs]
            line, = throughput.plot(xs, [r["items_per_s"] for r in runs.values()], marker="o", label=server)
            latency.plot(xs, [r["p50_ms"] for r in runs.values()], marker="o", color=line.get_color(),
                         label=f"{server} p50")
            latency.plot(xs, [r["p99_ms"] for r in runs.values()], linestyle=":", color=line.get_color(),
                         label=f"{server} p99")
        throughput.axhline(window["ideal_items_per_s"], color="black", linestyle="--", label=f"ideal window (C={size})")
        predicted = refs["predicted_ideal_items_per_s"]
        if predicted:
            throughput.plot([int(c) for c in predicted], list(predicted.values()), color="black", linestyle=":",
                            label="ideal window of C, predicted")
        throughput.axhline(window["arrival_items_per_s"], color="grey", linestyle="--",
                           label=f"arrival order (C={size})")
        throughput.axhline(refs["batch1"]["items_per_s"], color="grey", linestyle=":", label="batch-1")
        throughput.set_ylim(bottom=0)
        throughput.set_title(f"{name}: throughput")
        throughput.set_ylabel("items/s")
        latency.set_title(f"{name}: latency")
        latency.set_ylabel("ms")
        latency.set_yscale("log")
        concurrencies = sorted({int(c) for runs in model["runs"].values() for c in runs})
        for axis in (throughput, latency):
            axis.set_xscale("log", base=2)
            axis.set_xticks(concurrencies, [str(c) for c in concurrencies])
            axis.set_xlabel("concurrency (clients)")
            axis.legend(fontsize=7)
    fig.suptitle(f"{results['machine']['device_name']} ({results['machine']['device']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
