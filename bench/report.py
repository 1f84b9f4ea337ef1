"""results.json -> results.md (tables, ratios, targets) and throughput.png."""

from __future__ import annotations

from pathlib import Path
from typing import Any

SERVERS = ("modeldeploy", "litserve", "baseline")
RATIO_CONCURRENCY = 32


def ratios(model: dict[str, Any]) -> dict[str, float]:
    """modeldeploy over the limit, LitServe and the baseline, at concurrency 32 (or the closest run)."""
    runs = model["runs"]
    concurrency = min(runs["modeldeploy"], key=lambda c: abs(int(c) - RATIO_CONCURRENCY))
    ours = runs["modeldeploy"][concurrency]["items_per_s"]
    return {
        "concurrency": int(concurrency),
        "limit": ours / model["limit"]["limit_items_per_s"],
        "litserve": ours / max(runs["litserve"][concurrency]["items_per_s"], 1e-9),
        "baseline": ours / max(runs["baseline"][concurrency]["items_per_s"], 1e-9),
    }


def targets(model: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """The issue's targets: (what, measured, met)."""
    r = ratios(model)
    runs = model["runs"]["modeldeploy"]
    c1 = runs[min(runs, key=int)]
    batch1 = model["limit"]["batch1_latency_ms"]
    rows = [
        (f"c={r['concurrency']} throughput >= 0.85 x limit", f"{r['limit']:.2f} x", r["limit"] >= 0.85),
        (f"c={r['concurrency']} throughput >= 1.25 x LitServe", f"{r['litserve']:.2f} x", r["litserve"] >= 1.25),
        (f"c={r['concurrency']} throughput >= 1.5 x baseline", f"{r['baseline']:.2f} x", r["baseline"] >= 1.5),
        ("c=1 p50 <= batch-1 latency + 3 ms", f"{c1['p50_ms']:.1f} vs {batch1:.1f} + 3 ms", c1["p50_ms"] <= batch1 + 3),
    ]
    overload = model.get("overload")
    if overload:
        lat = overload["latency_ms"]
        c32 = runs[min(runs, key=lambda c: abs(int(c) - 32))]
        answered = set(overload["counts"]) <= {"200", "503"} and overload["failures"] == 0
        rows.append(("overload: every request answered 200 or 503", str(overload["counts"]), answered))
        if "503" in lat:
            rows.append(("overload: 503s answered in < 50 ms", f"p99 {lat['503']['p99']:.1f} ms, max "
                         f"{lat['503']['max']:.1f} ms", lat["503"]["max"] < 50))
        if "200" in lat:
            rows.append(("overload: p99 of 200s <= 2 x c=32 p99", f"{lat['200']['p99']:.0f} vs 2 x "
                         f"{c32['p99_ms']:.0f} ms", lat["200"]["p99"] <= 2 * c32["p99_ms"]))
    return rows


def write(results: dict[str, Any], out: Path) -> None:
    lines = ["# Benchmark results", "",
             "Produced by `bash bench/run.sh` (see the top of `bench/harness.py`); numbers from one run on a",
             "shared machine vary by about 10% run to run, the ratios hold better: the servers of a model run",
             "back to back in one invocation, each alone on the machine while it is measured.", ""]
    m = results["machine"]
    lines += [f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GiB, Python {m['python']}, torch "
              f"{m['torch']} ({m['torch_threads']} intra-op threads), no GPU. Date: {m['date']}. Load average "
              f"(1/5/15 min) before: {_load(m['load_average'])}, after: {_load(m['load_average_after'])} "
              "(other work shared the machine when it is above the bench's own ~2).", "",
              "![throughput and p95 latency against concurrency](throughput.png)", "",
              "Reading the numbers: the machine is shared (see the load average), so a point measured while other "
              "work ran is low for every server near it in time; compare servers within one concurrency. At "
              "concurrency 128 the baseline's waitress accepts 100 connections at a time (its default), so 28 of "
              "wrk's connections wait for a slot; modeldeploy raises that limit to twice its thread pool and "
              "LitServe (uvicorn) takes all 128.", ""]
    s = results["settings"]
    lines += [f"Load: `wrk` closed loop, one text of 5-60 words per request, {s['seconds']:g} s per point after a "
              f"{s['warmup_seconds']:g} s warm-up; servers: modeldeploy (`modeldeploy serve`, max_batch_size "
              f"{s['max_batch_size']}, max_wait_ms 0), the original app's way (Flask + waitress, one forward pass "
              f"per request), LitServe (max_batch_size {s['litserve_batch']}, batch_timeout {s['litserve_timeout']:g} s). "
              f"torch intra-op threads: modeldeploy's default ({m['torch_threads']}) for all three servers "
              f"(peers: {s['peer_torch_threads'] or 'torch default'}), so the comparison isolates batching; the "
              "threads check below runs modeldeploy with 1 thread and with one per core.",
              ""]
    for name, model in results["models"].items():
        limit = model["limit"]
        lines += [f"## {name}", "",
                  "In-process limit (no HTTP): items/s by batch size, in arrival order and length-grouped:", "",
                  "| batch size | " + " | ".join(str(b) for b in limit["arrival_order"]) + " |",
                  "|---|" + "---|" * len(limit["arrival_order"]),
                  "| arrival order | " + " | ".join(f"{v:.1f}" for v in limit["arrival_order"].values()) + " |",
                  "| length-grouped | " + " | ".join(f"{v:.1f}" for v in limit["length_grouped"].values()) + " |",
                  "",
                  f"Upper bound {limit['limit_items_per_s']:.1f} items/s (length-grouped, batch "
                  f"{limit['best_batch_size']}); best in arrival order {limit['arrival_best_items_per_s']:.1f}; "
                  f"batch-1 latency (median) {limit['batch1_latency_ms']:.1f} ms; length-grouped at the best batch "
                  "size by torch threads: " + ", ".join(f"{t}: {v:.1f}/s" for t, v in
                                                         limit["grouped_by_torch_threads"].items()) + ".", "",
                  "| server | concurrency | items/s | p50 ms | p95 ms | p99 ms | non-200 |",
                  "|---|---|---|---|---|---|---|"]
        for server in SERVERS:
            for concurrency, run in model["runs"][server].items():
                bad = {k: v for k, v in run["statuses"].items() if k != "200"}
                bad_text = ", ".join(f"{k}: {v}" for k, v in bad.items()) or "0"
                if run["errors"] or run["timeouts"]:
                    bad_text += f"; socket errors {run['errors']}, timeouts {run['timeouts']}"
                lines.append(f"| {server} | {concurrency} | {run['items_per_s']:.1f} | {run['p50_ms']:.0f} | "
                             f"{run['p95_ms']:.0f} | {run['p99_ms']:.0f} | {bad_text} |")
        r = ratios(model)
        memory = ", ".join(f"{k} {v:.0f} MB" for k, v in model["peak_memory_mb"].items())
        c1 = model["runs"]["modeldeploy"].get(min(model["runs"]["modeldeploy"], key=int))
        lines += ["", f"Ratios at concurrency {r['concurrency']}: modeldeploy / limit **{r['limit']:.2f}**, "
                  f"/ LitServe **{r['litserve']:.2f}**, / baseline **{r['baseline']:.2f}**. "
                  f"Concurrency-1 p50 {c1['p50_ms']:.1f} ms vs batch-1 in-process {limit['batch1_latency_ms']:.1f} ms. "
                  f"Peak memory (all processes of each server): {memory}.", ""]
        lines += ["| target | measured | met |", "|---|---|---|"]
        lines += [f"| {what} | {measured} | {'yes' if met else '**no**'} |" for what, measured, met in targets(model)]
        lines.append("")
        if "threads_check" in model:
            conditions = {"quiet": "on the quiet machine", "one_core_busy": "with one core kept busy by another process"}
            lines += ["torch intra-op threads, modeldeploy at concurrency 32, back to back: " + "; ".join(
                f"{conditions[condition]}: " + ", ".join(
                    f"{t} thread(s) {r['items_per_s']:.1f} items/s (p95 {r['p95_ms']:.0f} ms)" for t, r in runs.items())
                for condition, runs in model["threads_check"].items()) + ".", ""]
        if "overload" in model:
            o = model["overload"]
            c32 = model["runs"]["modeldeploy"].get(min(model["runs"]["modeldeploy"], key=lambda c: abs(int(c) - 32)))
            lat = o["latency_ms"]
            lines += [f"Overload: {o['concurrency']} clients, max_queue {o['max_queue']}, {o.get('http_threads', 16)} "
                      "HTTP threads (with fewer threads than clients waitress queues the surplus itself, before "
                      "the model's bounded queue sees it), clients honour Retry-After: "
                      f"answers {o['counts']}, connection failures {o['failures']}."
                      + (f" 503 latency p50 {lat['503']['p50']:.1f} / p99 {lat['503']['p99']:.1f} / max "
                         f"{lat['503']['max']:.1f} ms." if "503" in lat else " No 503s.")
                      + (f" 200 latency p99 {lat['200']['p99']:.0f} ms (concurrency-32 p99: {c32['p99_ms']:.0f} ms)."
                         if "200" in lat else ""), ""]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    plot(results, out / "throughput.png")


def _load(values: list[float]) -> str:
    return " / ".join(f"{v:.1f}" for v in values)


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = results["models"]
    fig, axes = plt.subplots(2, len(models), figsize=(5.5 * len(models), 7), squeeze=False)
    for column, (name, model) in enumerate(models.items()):
        top, bottom = axes[0][column], axes[1][column]
        for server in SERVERS:
            runs = model["runs"][server]
            xs = [int(c) for c in runs]
            top.plot(xs, [r["items_per_s"] for r in runs.values()], marker="o", label=server)
            bottom.plot(xs, [r["p95_ms"] for r in runs.values()], marker="o", label=server)
        top.axhline(model["limit"]["limit_items_per_s"], color="grey", linestyle="--", label="in-process limit")
        top.set_title(f"{name}: throughput")
        top.set_ylabel("items/s")
        bottom.set_title(f"{name}: p95 latency")
        bottom.set_ylabel("ms")
        for axis in (top, bottom):
            axis.set_xscale("log", base=2)
            axis.set_xlabel("concurrency")
            axis.legend(fontsize=8)
        bottom.set_yscale("log")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
