"""Overload (issue 12): does goodput hold, are refusals cheap and fast, are deadlines honoured?

A server that answers every request it accepts, however late, serves nobody once clients time out;
one that refuses cheaply and early keeps serving at its peak. For each model (one ``modeldeploy
serve`` process per model, loopback, always stopped), with review-like texts (bench/reviews.py):

1. **Saturation**: wrk closed loop at c = 4, 8, 16, 32. Peak goodput is the best 200-answers/s;
   the saturating concurrency C the smallest c within 95 % of it.
2. **Retry storms** at 4 x C and 16 x C clients that retry at once (plain wrk: a connection sends
   its next request as soon as answered, 503 or not). Goodput against the peak; probes
   (``/health/live``, ``/health/ready``, ``/``, ``/predict``, each 100 ms after its last answer),
   connected before the storm, give the latency of a refusal and of a health check under the storm
   to a client that is not part of it; the server's CPU time gives the cost of a refusal.
3. **Open-loop Poisson** arrivals at 2 x peak (bench/openloop.py), each request with
   ``X-Request-Timeout: 2``: goodput and the share of accepted requests answered 200 in time.

After each storm and after the Poisson phase the closed loop runs again at the peak's
concurrency: each phase's goodput is judged against the mean of the closed-loop runs just before
and after it, since this machine's speed drifts by 10-20 % within minutes (its ratio to the first
peak is reported too).

``--soak SECONDS`` instead serves all the models from one server, each at 0.8 x its peak (open
loop), and follows the server's memory and p99 latency over time. Each peak is what the model
does with the machine to itself, so together the models are offered more than the machine has
(3 x 0.8 of it for three models); ``--soak-load 0.27`` shares 0.8 of it between them. The soak's
arrivals (times and texts) repeat every span (``--soak-period``, default the 60 s span), so its
first and last spans after the warm-up carry the very same work: the p99 of a span of ~220 NER
answers is its two or three slowest, which depend on which long texts arrived together, and with
fresh arrivals that alone moved a minute's p99 by 0.7-1.4 x. The p99 of every span is reported,
so the spread between spans of equal work (the instrument's noise) is seen beside the drift.

    python bench/overload.py                                    # all three models, 9-11 minutes
    python bench/overload.py --soak 600                         # ~13 minutes (~10.5 with --rates)
    python bench/overload.py --smoke --models sentiment         # the harness end to end, ~1 minute
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import loadgen  # noqa: E402
import openloop  # noqa: E402
import recording  # noqa: E402
import reviews  # noqa: E402
from probes import Probes, Target  # noqa: E402
from servers import PYTHON, Server, free_port, parse_setting  # noqa: E402

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
WORK = BENCH / ".work"
SOURCES = {"sentiment": WORK / "minilm", "ner": WORK / "models" / "ner",
           "summarization": WORK / "models" / "summarization"}
BATCH = {"max_queue": 64, "max_batch_size": 32, "timeout": 60}
CONCURRENCY = (4, 8, 16, 32)
STORM_FACTORS = (4, 16)
#: Within this share of the best goodput, a concurrency saturates the model.
SATURATED = 0.95
POISSON_LOAD = 2.0
DEADLINE_S = 2.0
#: accepted_in_time: the issue asks that accepted requests meet their deadline; a prediction
#: can be wrong, and this reads that as 99 % of them (as a p99 would).
TARGETS = {"storm_goodput_ratio": 0.9, "refusal_p99_ms": 20.0, "health_p99_ms": 100.0,
           "soak_rss_growth": 0.05, "soak_p99_drift": 0.20, "accepted_in_time": 0.99}
BODIES = 512


@dataclass(frozen=True)
class Phases:
    """How long each phase runs (seconds); ``--smoke`` and ``--seconds-scale`` shrink them all."""

    warmup: float = 5
    point: float = 10
    storm: float = 20
    poisson: float = 20
    client_timeout: float = 30
    soak_warmup: float = 60
    soak_span: float = 60
    window: float = 10

    def scaled(self, scale: float) -> Phases:
        """Each phase ``scale`` times as long, in whole seconds (wrk's unit), at least 1 (10 for the
        client's timeout: a request must have time to be answered late)."""
        return Phases(**{name: max(10 if name == "client_timeout" else 1, round(value * scale))
                         for name, value in asdict(self).items()})


# ---------------------------------------------------------------------- the server's process
def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all its threads), seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def settle(pid: int, most: float = 60.0, idle_share: float = 0.05) -> float:
    """Wait until the server has worked off what the last phase left queued (under 5 % of a core
    for half a second), so a phase does not pay for the one before; the seconds waited."""
    started = time.monotonic()
    before = cpu_seconds(pid)
    while time.monotonic() - started < most:
        time.sleep(0.5)
        now = cpu_seconds(pid)
        if now - before < idle_share * 0.5:
            break
        before = now
    return time.monotonic() - started


def modeldeploy(models: Sequence[str], label: str, work: Path, pythonpath: str | None,
                settings: dict[str, Any], sources: Mapping[str, Path] = SOURCES, device: str = "auto") -> Server:
    port = free_port()
    config = work / f"{label}.yaml"
    served = {m: {"source": str(sources[m]), "batch": BATCH, "device": device} for m in models}
    config.write_text(json.dumps({"serve": list(models), "server": settings, "models": served}))  # JSON is YAML
    command = [PYTHON, "-m", "modeldeploy", "serve", "--config", str(config), "--port", str(port)]
    return Server(label, command, port, "/health/ready", work, {"PYTHONPATH": pythonpath} if pythonpath else None)


def ensure_models(models: Sequence[str]) -> None:
    if "sentiment" in models and not (SOURCES["sentiment"] / "config.json").exists():
        import minilm

        minilm.build(SOURCES["sentiment"])
    if any(not (SOURCES[m] / "config.json").exists() for m in models if m != "sentiment"):
        subprocess.run([PYTHON, "-m", "modeldeploy.testing", "build", str(WORK / "models"), "--size", "base"],
                       check=True)


# ---------------------------------------------------------------------- phases
def saturation(server: Server, bodies: Path, phases: Phases) -> dict[str, Any]:
    """Closed loop at each concurrency: goodput, latency and server CPU per success."""
    assert server.process is not None
    pid = server.process.pid
    loadgen.wrk(server.url, bodies, 8, phases.warmup)  # warm-up, not recorded
    points: dict[str, dict[str, Any]] = {}
    for concurrency in CONCURRENCY:
        settle(pid)
        before = cpu_seconds(pid)
        point = loadgen.wrk(server.url, bodies, concurrency, phases.point)
        point["cpu_s"] = cpu_seconds(pid) - before
        point["cpu_ms_per_success"] = 1000 * point["cpu_s"] / point["ok"] if point["ok"] else None
        points[str(concurrency)] = point
        print(f"   c={concurrency}: {point['items_per_s']:.1f} 200/s, p99 {point['p99_ms']:.0f} ms", flush=True)
    peak = max(point["items_per_s"] for point in points.values())
    saturating = min(c for c in CONCURRENCY if points[str(c)]["items_per_s"] >= SATURATED * peak)
    return {"points": points, "peak": peak, "saturating_concurrency": saturating,
            "cpu_ms_per_success": points[str(saturating)]["cpu_ms_per_success"]}


def peak_check(server: Server, bodies: Path, concurrency: int, phases: Phases) -> float:
    """Closed loop at the peak's concurrency again, right after a phase: this machine's speed drifts
    by 10-20 % within minutes, so each phase is judged against the closed-loop runs on either side
    of it (as well as against the peak measured first)."""
    assert server.process is not None
    settle(server.process.pid)
    goodput = loadgen.wrk(server.url, bodies, concurrency, phases.point)["items_per_s"]
    print(f"   closed loop again at c={concurrency}: {goodput:.1f} 200/s", flush=True)
    return goodput


def judge_against_neighbours(phase: dict[str, Any], before: float, after: float) -> None:
    """The phase's goodput over the mean of the closed-loop runs just before and just after it."""
    phase["adjacent_peak"] = (before + after) / 2
    phase["adjacent_ratio"] = phase["goodput"] / phase["adjacent_peak"] if phase["adjacent_peak"] else None


def probe_targets(model: str) -> list[Target]:
    """Health, readiness, homepage, and a review of median length to the model."""
    text = sorted(reviews.reviews(BODIES), key=len)[BODIES // 2]
    return [Target("live", "GET", "/health/live"), Target("ready", "GET", "/health/ready"),
            Target("homepage", "GET", "/"),
            Target("predict", "POST", "/predict", json.dumps({"model_name": model, "data": text}).encode())]


def storm(server: Server, model: str, bodies: Path, clients: int, phases: Phases,
          cpu_ms_per_success: float | None, peak: float) -> dict[str, Any]:
    """``clients`` connections retrying at once, probes beside them, and the server's CPU."""
    assert server.process is not None
    pid = server.process.pid
    settle(pid)
    with Probes("127.0.0.1", server.port, probe_targets(model)) as probes:
        before, started = cpu_seconds(pid), time.monotonic()
        load = loadgen.wrk(server.url, bodies, clients, phases.storm)
        cpu = cpu_seconds(pid) - before
    probed = probes.summary()
    # when in the storm the slow refusals came, to tell its onset from its course
    slow_refusals = [(round(ms, 1), round(sent - started, 2)) for status, ms, sent in probes.samples["predict"]
                     if status == "503" and ms > TARGETS["refusal_p99_ms"]]
    predict = probed["predict"]["counts"]
    # the predict probe's answers are the server's work too (the health ones are a few ms of CPU/s)
    successes = load["ok"] + predict.get("200", 0)
    refusals = load["statuses"].get("503", 0) + predict.get("503", 0)
    answered = load["requests"] + sum(n for status, n in predict.items() if status.isdigit())
    per_refusal = None
    if refusals and cpu_ms_per_success is not None:
        per_refusal = (1000 * cpu - successes * cpu_ms_per_success) / refusals
    return {
        "clients": clients, "wrk": load, "goodput": load["items_per_s"],
        "goodput_ratio": load["items_per_s"] / peak if peak else None,
        "refused_per_s": load["statuses"].get("503", 0) / load["seconds"],
        "cpu_s": cpu, "cpu_ms_per_answer": 1000 * cpu / answered if answered else None,
        "cpu_ms_per_refusal_estimate": per_refusal, "probes": probed, "slow_refusals": slow_refusals,
    }


def poisson(server: Server, model: str, bodies: Path, rate: float, phases: Phases) -> dict[str, Any]:
    """Open-loop Poisson arrivals at ``rate``, each request with a deadline of DEADLINE_S."""
    assert server.process is not None
    settle(server.process.pid)
    stream = openloop.Stream(model, rate, bodies.read_bytes().splitlines(), {"X-Request-Timeout": f"{DEADLINE_S:g}"})
    run = openloop.run("127.0.0.1", server.port, [stream], phases.poisson, phases.client_timeout)
    return {"offered_per_s": rate, "connections_opened": run["connections_opened"],
            "generator_cpu_s": run["generator_cpu_s"], **summarize(run["records"], phases.poisson)}


def summarize(records: Sequence[openloop.Record], seconds: float) -> dict[str, Any]:
    """Goodput: 200s answered during the phase, over its length (what is answered while the
    stragglers drain is counted by status but not in the rate); in time: within DEADLINE_S of when
    the request was due. *Accepted* is every request sent that was not refused (503): timeouts and
    failures count against it; the share in time is over every accepted request, whenever answered."""
    counts: dict[str, int] = {}
    for record in records:
        counts[record.status] = counts.get(record.status, 0) + 1
    sent = [r for r in records if r.status != openloop.DROPPED]
    ok = [r.latency_ms for r in records if r.status == "200"]
    in_time = sum(1 for ms in ok if ms <= DEADLINE_S * 1000)
    during = [r.latency_ms for r in records if r.status == "200" and r.done <= seconds]
    accepted = len(sent) - counts.get("503", 0)
    refused = [r.latency_ms for r in records if r.status == "503"]
    return {
        "seconds": seconds, "sent_per_s": len(sent) / seconds, "counts": dict(sorted(counts.items())),
        "send_lag_ms": loadgen._percentiles([1000 * r.lag for r in sent]) if sent else None,
        "goodput": len(during) / seconds,
        "goodput_in_time": sum(1 for ms in during if ms <= DEADLINE_S * 1000) / seconds,
        "accepted": accepted, "accepted_in_time_share": in_time / accepted if accepted else None,
        "latency_200_ms": loadgen._percentiles(ok) if ok else None,
        "latency_503_ms": loadgen._percentiles(refused) if refused else None,
    }


def measure(model: str, args: argparse.Namespace, phases: Phases) -> dict[str, Any]:
    bodies = reviews.write_bodies(args.work / f"overload-{model}-bodies.jsonl", model, BODIES)
    server = modeldeploy([model], f"overload-{model}", args.work, args.server_pythonpath, args.server_settings).start()
    try:
        server.wait_ready()
        print(f"== {model}: saturation", flush=True)
        result: dict[str, Any] = {"source": str(SOURCES[model].relative_to(ROOT)),
                                  "saturation": saturation(server, bodies, phases)}
        sat = result["saturation"]
        peak, c = sat["peak"], sat["saturating_concurrency"]
        at_peak = max(CONCURRENCY, key=lambda n: sat["points"][str(n)]["items_per_s"])
        checks = [peak]  # the closed-loop goodput at the peak's concurrency before each phase and after the last
        result["storms"] = {}
        for factor in STORM_FACTORS:
            print(f"== {model}: storm at {factor} x C = {factor * c} clients", flush=True)
            result["storms"][str(factor)] = storm(server, model, bodies, factor * c, phases,
                                                  sat["cpu_ms_per_success"], peak)
            checks.append(peak_check(server, bodies, at_peak, phases))
            judge_against_neighbours(result["storms"][str(factor)], checks[-2], checks[-1])
        print(f"== {model}: Poisson at {POISSON_LOAD:g} x peak = {POISSON_LOAD * peak:.1f}/s", flush=True)
        result["poisson"] = poisson(server, model, bodies, POISSON_LOAD * peak, phases)
        checks.append(peak_check(server, bodies, at_peak, phases))
        judge_against_neighbours(result["poisson"], checks[-2], checks[-1])
        result["peak_checks"] = {"concurrency": at_peak, "goodput": checks}
        result["server_log"] = str(server.log_path.relative_to(ROOT))
        return result
    finally:
        server.stop()


# ---------------------------------------------------------------------- soak
class RssSampler(threading.Thread):
    """The server's VmRSS on every whole second since it was made: (second, MiB)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.halt = pid, threading.Event()
        self.samples: list[tuple[int, float]] = []
        self.t0 = time.perf_counter()

    def run(self) -> None:
        second = 1
        while not self.halt.wait(max(0.0, self.t0 + second - time.perf_counter())):
            try:
                self.samples.append((second, rss_mb(self.pid)))
            except OSError:
                return
            second = max(second + 1, int(time.perf_counter() - self.t0) + 1)  # a late sample skips, not bunches


def windows(records: Sequence[openloop.Record], rss: Sequence[tuple[int, float]], seconds: float,
            width: float) -> list[dict[str, Any]]:
    """Per window of ``width`` s: RSS at its end and its maximum; the requests due in it, their
    errors (anything but 200, whenever answered) and the latency of their 200s, overall and per
    model. By when a request was due, not answered, so a slow answer counts where it was asked for
    and the last window keeps the answers that came after the end."""
    out = []
    for index in range(round(seconds / width)):
        start, end = index * width, (index + 1) * width
        inside = [r for r in records if start <= r.due < end]
        memory = [mb for t, mb in rss if start < t <= end]
        window: dict[str, Any] = {"t": end, "rss_mb": memory[-1] if memory else None,
                                  "rss_max_mb": max(memory) if memory else None}
        for label in ["all", *sorted({r.stream for r in records})]:
            chosen = [r for r in inside if label in ("all", r.stream)]
            ok = [r.latency_ms for r in chosen if r.status == "200"]
            cuts = loadgen._percentiles(ok) if ok else None
            window[label] = {"requests": len(chosen), "errors": len(chosen) - len(ok),
                             "p50_ms": cuts["p50"] if cuts else None, "p99_ms": cuts["p99"] if cuts else None}
        out.append(window)
    return out


def p99_between(records: Sequence[openloop.Record], model: str, start: float, end: float) -> float | None:
    """p99 latency of the 200s to requests for ``model`` due in [start, end)."""
    ok = [r.latency_ms for r in records if r.stream == model and r.status == "200" and start <= r.due < end]
    return loadgen._percentiles(ok)["p99"] if ok else None


def _same_work(s: dict[str, Any]) -> str:
    """How the soak's arrivals were drawn, as the report says it."""
    if not s.get("period_s"):
        return ", each with arrivals of its own."
    if s["same_work"]:
        return (f"; the arrivals (times and texts) repeat every {s['period_s']:g} s, so those two spans carried "
                "the very same work.")
    return f"; the arrivals repeat every {s['period_s']:g} s, which does not line those two spans up."


def _span_starts(seconds: float, span: float) -> list[float]:
    return [index * span for index in range(int(seconds // span))]


def soak(args: argparse.Namespace, phases: Phases) -> dict[str, Any]:
    models = args.models
    bodies = {m: reviews.write_bodies(args.work / f"overload-soak-{m}-bodies.jsonl", m, BODIES, seed=index)
              for index, m in enumerate(models)}
    server = modeldeploy(models, "overload-soak", args.work, args.server_pythonpath, args.server_settings).start()
    try:
        server.wait_ready()
        assert server.process is not None
        pid = server.process.pid
        rates, peaks_from = args.rates, "--rates"
        if not rates:
            peaks_from = "measured first on the soak server, one model at a time (closed loop, c = 4..32)"
            rates = {}
            for model in models:
                print(f"== soak: peak of {model}", flush=True)
                rates[model] = saturation(server, bodies[model], phases)["peak"]
        settle(pid)
        streams = [openloop.Stream(m, args.soak_load * rates[m], bodies[m].read_bytes().splitlines())
                   for m in models]
        seconds = args.soak
        warmup = min(phases.soak_warmup, seconds / 4)
        span = min(phases.soak_span, (seconds - warmup) / 2)
        period = span if args.soak_period is None else args.soak_period
        print(f"== soak: {args.soak:g} s at {', '.join(f'{s.label} {s.rate:.1f}/s' for s in streams)}", flush=True)
        sampler = RssSampler(pid)
        sampler.start()
        try:
            run = openloop.run("127.0.0.1", server.port, streams, seconds, phases.client_timeout,
                               period=period or None)
        finally:
            sampler.halt.set()
        rss_end = rss_mb(pid)
    finally:
        server.stop()
    records = run["records"]
    per_window = windows(records, sampler.samples, seconds, phases.window)
    first = [mb for t, mb in sampler.samples if warmup <= t < warmup + span]
    last = [mb for t, mb in sampler.samples if seconds - span <= t <= seconds]
    growth = statistics.mean(last) / statistics.mean(first) - 1 if first and last else None
    drift = {}
    for model in models:
        early = p99_between(records, model, warmup, warmup + span)
        late = p99_between(records, model, seconds - span, seconds)
        drift[model] = {"first_p99_ms": early, "last_p99_ms": late,
                        "ratio": late / early if early and late is not None else None,
                        "p99_by_span_ms": [p99_between(records, model, start, start + span)
                                           for start in _span_starts(seconds, span)]}
    errors = [r for r in records if r.status != "200"]
    return {
        "seconds": seconds, "models": models, "peaks": rates, "peaks_from": peaks_from, "load": args.soak_load,
        "rates": {s.label: s.rate for s in streams}, "warmup_s": warmup, "span_s": span, "window_s": phases.window,
        "period_s": period, "same_work": bool(period) and (seconds - span - warmup) % period == 0,
        "summary": summarize(records, seconds),
        "by_model": {m: summarize([r for r in records if r.stream == m], seconds) for m in models},
        "errors": len(errors), "error_reasons": error_reasons(errors),
        "rss_first_mb": statistics.mean(first) if first else None,
        "rss_last_mb": statistics.mean(last) if last else None, "rss_growth": growth,
        "rss_end_mb": rss_end, "p99_drift": drift, "windows": per_window,
        "generator_cpu_s": run["generator_cpu_s"], "connections_opened": run["connections_opened"],
    }


def error_reasons(errors: Sequence[openloop.Record]) -> list[dict[str, Any]]:
    """Errors grouped by model, status and the server's reason, most frequent first."""
    counts = collections.Counter((r.stream, r.status, r.reason) for r in errors)
    return [{"model": model, "status": status, "reason": why, "count": n}
            for (model, status, why), n in counts.most_common()]


def plot_soak(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    soaked = results["soak"]
    figure, (memory, tail) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    minutes = [w["t"] / 60 for w in soaked["windows"]]
    memory.plot(minutes, [w["rss_mb"] for w in soaked["windows"]], marker=".", label="at the window's end")
    memory.plot(minutes, [w["rss_max_mb"] for w in soaked["windows"]], linewidth=0.8, label="window maximum")
    memory.set_ylabel("server VmRSS (MiB)")
    memory.set_title(f"modeldeploy serve, {', '.join(soaked['models'])} at {soaked['load']:g} x peak, open loop")
    memory.legend()
    for model in soaked["models"]:
        tail.plot(minutes, [w[model]["p99_ms"] for w in soaked["windows"]], marker=".", label=model)
    tail.set_yscale("log")
    tail.set_ylabel(f"p99 of 200s per {soaked['window_s']:g} s (ms)")
    tail.set_xlabel("minutes")
    tail.legend()
    for axis in (memory, tail):
        axis.axvline(soaked["warmup_s"] / 60, color="grey", linestyle=":", linewidth=1)
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


# ---------------------------------------------------------------------- reports
def verdict(value: float | None, limit: float, at_least: bool = False) -> str:
    if value is None:
        return "not measured"
    return "met" if (value >= limit if at_least else value <= limit) else "not met"


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _cuts(cuts: dict[str, float] | None, *keys: str) -> str:
    """Percentiles as "p50 / p99" (the keys asked for), or "none"."""
    return "none" if not cuts else " / ".join(_ms(cuts[key]) for key in keys)


def _probe(storm_result: dict[str, Any], label: str, status: str) -> dict[str, float] | None:
    return storm_result["probes"][label]["latency_ms"].get(status)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{status}: {n}" for status, n in sorted(counts.items())) or "none"


def health_verdict(storm_result: dict[str, Any], label: str) -> str:
    """Met when every probe of ``label`` was answered 200 and their p99 is within the target."""
    cuts = _probe(storm_result, label, "200")
    if set(storm_result["probes"][label]["counts"]) - {"200"}:
        return "not met"
    return verdict(cuts["p99"] if cuts else None, TARGETS["health_p99_ms"])


def model_section(model: str, r: dict[str, Any]) -> list[str]:
    sat = r["saturation"]
    c, peak = sat["saturating_concurrency"], sat["peak"]
    curve = "; ".join(f"c={k}: {p['items_per_s']:.1f}/s, p50 {_ms(p['p50_ms'])} / p99 {_ms(p['p99_ms'])} ms"
                      for k, p in sat["points"].items())
    storms = r["storms"]
    head = " | ".join(f"{f} x C = {s['clients']} clients" for f, s in storms.items())
    rows: list[tuple[str, list[str], str]] = []

    def row(name: str, cell, target: str = "") -> None:  # cell(storm) -> str
        rows.append((name, [cell(s) for s in storms.values()], target))

    ratio = TARGETS["storm_goodput_ratio"]
    row("goodput (200/s), ratio to peak", lambda s: f"{s['goodput']:.1f} = {s['goodput_ratio']:.2f} x")
    row("ratio to the closed-loop runs beside it", lambda s: f"{s['adjacent_ratio']:.2f} x (of "
        f"{s['adjacent_peak']:.1f}), **{verdict(s['adjacent_ratio'], ratio, at_least=True)}**", f">= {ratio:g} x peak")
    row("refused (503/s)", lambda s: f"{s['refused_per_s']:.0f}")
    row("wrk answers", lambda s: _counts(s["wrk"]["statuses"]) + (
        f"; socket errors {s['wrk']['errors']}, timeouts {s['wrk']['timeouts']}"
        if s["wrk"]["errors"] or s["wrk"]["timeouts"] else ""))
    row("wrk latency, all statuses (p50 / p99 ms)", lambda s: f"{_ms(s['wrk']['p50_ms'])} / {_ms(s['wrk']['p99_ms'])}")

    def refusal(s: dict[str, Any]) -> str:
        cuts = _probe(s, "predict", "503")
        if cuts is None:
            return "no 503 seen, **not measured**"
        return (f"{_ms(cuts['p50'])} / {_ms(cuts['p99'])} / {_ms(cuts['max'])}, "
                f"**{verdict(cuts['p99'], TARGETS['refusal_p99_ms'])}**")

    row("503 to the /predict probe (p50 / p99 / max ms)", refusal, f"p99 <= {TARGETS['refusal_p99_ms']:g} ms")
    row(f"503s to the /predict probe over {TARGETS['refusal_p99_ms']:g} ms (ms, sent s into the storm)",
        lambda s: "not recorded" if "slow_refusals" not in s else
        "; ".join(f"{_ms(ms)} at {at:g} s" for ms, at in s["slow_refusals"]) or "none")
    row("200 to the /predict probe (p50 / p99 ms)", lambda s: _cuts(_probe(s, "predict", "200"), "p50", "p99"))
    for label, path in (("live", "/health/live"), ("ready", "/health/ready")):
        def health(s: dict[str, Any], label: str = label) -> str:
            other = {k: n for k, n in s["probes"][label]["counts"].items() if k != "200"}
            note = f" (also {_counts(other)})" if other else ""
            return f"{_cuts(_probe(s, label, '200'), 'p50', 'p99')}{note}, **{health_verdict(s, label)}**"

        row(f"GET {path} (p50 / p99 ms)", health, f"p99 <= {TARGETS['health_p99_ms']:g} ms, all 200")
    row("GET / homepage (p50 / p99 ms)", lambda s: _cuts(_probe(s, "homepage", "200"), "p50", "p99") + (
        f" (also {_counts({k: n for k, n in s['probes']['homepage']['counts'].items() if k != '200'})})"
        if set(s["probes"]["homepage"]["counts"]) - {"200"} else ""))
    row("server CPU per answer (ms)", lambda s: _ms(s["cpu_ms_per_answer"]))
    row("server CPU per refusal, estimated (ms)", lambda s: _ms(s["cpu_ms_per_refusal_estimate"]))
    checks = r["peak_checks"]
    lines = [f"## {model} ({r['source']})", "",
             (f"Peak goodput **{peak:.1f}/s** at C = **{c}** (CPU {_ms(sat['cpu_ms_per_success'])} ms per "
              f"success). Closed loop: {curve}. Closed loop at c={checks['concurrency']} again after each storm "
              f"and after the Poisson phase: {' / '.join(f'{g:.1f}' for g in checks['goodput'][1:])}/s."), "",
             f"| retry storm | {head} | target |", "|---|" + "---|" * len(storms) + "---|"]
    lines += [f"| {name} | {' | '.join(cells)} | {target} |" for name, cells, target in rows]
    p = r["poisson"]
    ok, lag = p["latency_200_ms"], p["send_lag_ms"]
    share = p["accepted_in_time_share"]
    lines += ["", (f"Open-loop Poisson at {POISSON_LOAD:g} x peak, `X-Request-Timeout: {DEADLINE_S:g}`, "
                   f"{p['seconds']:g} s:"), "",
              "| measure | value |", "|---|---|",
              (f"| offered / sent (requests/s) | {p['offered_per_s']:.1f} / {p['sent_per_s']:.1f} "
               f"(send lag p99 {_ms(lag['p99'] if lag else None)} ms; the generator used "
               f"{100 * p['generator_cpu_s'] / p['seconds']:.0f} % of a core) |"),
              f"| goodput (200/s), ratio to peak | {p['goodput']:.1f} = {p['goodput'] / peak:.2f} x |",
              (f"| ratio to the closed-loop runs beside it | {p['adjacent_ratio']:.2f} x (of "
               f"{p['adjacent_peak']:.1f}), **{verdict(p['adjacent_ratio'], ratio, True)}** |"),
              f"| goodput in time (200 within {DEADLINE_S:g} s, /s) | {p['goodput_in_time']:.1f} |",
              (f"| accepted (not 503) answered 200 within {DEADLINE_S:g} s | "
               f"{'n/a' if share is None else f'{100 * share:.1f} %'} of {p['accepted']} |"),
              f"| answers | {_counts(p['counts'])} |",
              f"| latency of 200s (p50 / p99 / max ms) | {_cuts(ok, 'p50', 'p99', 'max')} |",
              f"| latency of 503s (p50 / p99 ms) | {_cuts(p['latency_503_ms'], 'p50', 'p99')} |",
              ""]
    return lines


def header(results: dict[str, Any]) -> list[str]:
    # a frozen install is the server, whatever the working tree holds
    dirty = ", with uncommitted changes to the server" if results["dirty"] and not results["server_pythonpath"] else ""
    site = (f"; the server ran from a frozen install of commit {results.get('server_commit') or results['commit']}"
            if results["server_pythonpath"] else "")
    if results.get("server_settings"):
        site += f"; server settings `{json.dumps(results['server_settings'])}`"
    return [(f"Produced by `{results['command']}` ({results['date']}, commit {results['commit']}{dirty}): "
             f"{results['machine']}. Server: `modeldeploy serve` on loopback, batch settings "
             f"`{json.dumps(results['batch'])}`{site}. Traffic: one review-like text per request (bench/reviews.py: "
             f"median ~18 words, 4 % of 120-380 words, {BODIES} distinct texts in turn).")]


def report(results: dict[str, Any]) -> str:
    ph = results["phases"]
    lines = ["# Overload: goodput, refusals and deadlines (issue 12)", "", *header(results), "",
             "How it was taken, one server process per model, started and stopped by the script:", "",
             (f"- **Saturation**: wrk closed loop at c = {', '.join(map(str, CONCURRENCY))}, {ph['point']:g} s "
              f"each after a {ph['warmup']:g} s warm-up at 8. Peak = the best 200-answers/s; C = the smallest c "
              f"within {SATURATED:.0%} of it. After each storm and after the Poisson phase, the closed loop at the "
              f"peak's concurrency again for {ph['point']:g} s: each phase's goodput is judged against the mean of "
              "the closed-loop runs just before and after it (the machine's speed drifts by 10-20 % within "
              "minutes), and its ratio to the first peak is given too."),
             (f"- **Retry storm**: wrk with {' and '.join(f'{f} x C' for f in STORM_FACTORS)} connections for "
              f"{ph['storm']:g} s: each sends its next request as soon as it is answered, 503 or not (clients "
              "retrying at once, ignoring Retry-After). Beside it, probes each on their own keep-alive "
              "connection, sending 100 ms after their last answer (at most 10/s), opened (with one request, "
              "not counted) before the storm begins: `GET /health/live`, `GET /health/ready`, `GET /`, "
              "`POST /predict` (a review of median length); their latency is split by status. The /predict "
              "probe is a client already connected that waits 100 ms after every answer, a 200 as well as a "
              "503 (the server paces a request sent within 50 ms of its connection's last answer as a storm "
              "client's): the refusal latency it sees is the one the 503 target is held to. The storm's own "
              "clients, which send again as soon as they are refused, cannot all be refused that fast: with N "
              "of them and R refusals a second (what the server allows, `server.max_refusals_per_second`), "
              "Little's law sets their wait at about N / R (the wrk latency row)."),
             ("- **CPU**: the server process's utime + stime (/proc/PID/stat) over the storm. Per refusal, "
              "estimated: (storm CPU - successes x CPU per success at C) / refusals, counting the /predict "
              "probe's answers too."),
             (f"- **Poisson**: open loop (bench/openloop.py: exponential inter-arrival times, each request its "
              f"own task, a keep-alive connection pool) at {POISSON_LOAD:g} x peak for {ph['poisson']:g} s, each "
              f"request with `X-Request-Timeout: {DEADLINE_S:g}` (a server that does not know it ignores it); "
              f"latency from when a request was due; a request unanswered after {ph['client_timeout']:g} s "
              "counts as a timeout. Goodput: 200s answered during the phase, over its length."), ""]
    verdicts = []
    for model, r in results["models"].items():
        lines += model_section(model, r)
        for factor, s in r["storms"].items():
            refusal = _probe(s, "predict", "503")
            verdicts += [
                (model, f"storm {factor} x C: goodput >= {TARGETS['storm_goodput_ratio']:g} x peak (the closed-loop "
                 "runs beside it)", f"{s['adjacent_ratio']:.2f} x (to the first peak: {s['goodput_ratio']:.2f} x)",
                 verdict(s["adjacent_ratio"], TARGETS["storm_goodput_ratio"], True)),
                (model, f"storm {factor} x C: 503 p99 <= {TARGETS['refusal_p99_ms']:g} ms",
                 _ms(refusal["p99"] if refusal else None), verdict(refusal["p99"] if refusal else None,
                                                                   TARGETS["refusal_p99_ms"]))]
            for label in ("live", "ready"):
                cuts = _probe(s, label, "200")
                clean = set(s["probes"][label]["counts"]) == {"200"}
                target = f"storm {factor} x C: /health/{label} all 200, p99 <= {TARGETS['health_p99_ms']:g} ms"
                verdicts.append((model, target,
                                 _ms(cuts["p99"] if cuts else None) + ("" if clean else " (not all 200)"),
                                 health_verdict(s, label)))
        p = r["poisson"]
        verdicts += [
            (model, f"Poisson at {POISSON_LOAD:g} x peak: goodput >= {TARGETS['storm_goodput_ratio']:g} x peak (the "
             "closed-loop runs beside it)", f"{p['adjacent_ratio']:.2f} x (to the first peak: "
             f"{p['goodput'] / r['saturation']['peak']:.2f} x)",
             verdict(p["adjacent_ratio"], TARGETS["storm_goodput_ratio"], True)),
            (model, f"Poisson: accepted requests answered 200 within {DEADLINE_S:g} s, >= "
             f"{TARGETS['accepted_in_time']:.0%}", "n/a" if p["accepted_in_time_share"] is None else
             f"{round(p['accepted_in_time_share'] * p['accepted'])} of {p['accepted']} "
             f"({100 * p['accepted_in_time_share']:.2f} %)",
             verdict(p["accepted_in_time_share"], TARGETS["accepted_in_time"], True))]
    lines += ["## Targets", "", "| model | target | value | |", "|---|---|---|---|"]
    lines += [f"| {m} | {t} | {v} | **{ok}** |" for m, t, v, ok in verdicts]
    return "\n".join(lines) + "\n"


def soak_report(results: dict[str, Any]) -> str:
    s = results["soak"]
    growth, limit = s["rss_growth"], TARGETS["soak_rss_growth"]
    drift_limit = TARGETS["soak_p99_drift"]
    lines = [f"# Soak: {', '.join(s['models'])} from one server, {s['seconds']:g} s", "", *header(results), "",
             f"Open-loop Poisson on each model at {s['load']:g} x its peak goodput (peaks {s['peaks_from']}): "
             + ", ".join(f"{m} {s['rates'][m]:.1f}/s (peak {s['peaks'][m]:.1f})" for m in s["models"])
             + f". No deadline header. Windows of {s['window_s']:g} s; warm-up: the first {s['warmup_s']:g} s; "
             f"'first' and 'last' are the {s['span_s']:g} s after the warm-up and the last {s['span_s']:g} s"
             + _same_work(s) + " "
             f"RSS: VmRSS of the server process, sampled each second. Figure: {results['figure']}.", "",
             "| target | value | |", "|---|---|---|",
             (f"| zero errors (any answer but 200, timeouts, failures) | {s['errors']} of "
              f"{sum(s['summary']['counts'].values())} ({_counts(s['summary']['counts'])}) | "
              f"**{'met' if s['errors'] == 0 else 'not met'}** |"),
             (f"| RSS growth after warm-up < {limit:.0%} | "
              f"{_ms(s['rss_first_mb'])} -> {_ms(s['rss_last_mb'])} MiB = "
              f"{'n/a' if growth is None else f'{100 * growth:+.1f} %'} | **{verdict(growth, limit)}** |")]
    for model, d in s["p99_drift"].items():
        ratio = d["ratio"]
        lines.append(f"| {model}: p99 of the last span within {drift_limit:.0%} of the first | "
                     f"{_ms(d['first_p99_ms'])} -> {_ms(d['last_p99_ms'])} ms = "
                     f"{'n/a' if ratio is None else f'{ratio:.2f} x'} | "
                     f"**{verdict(None if ratio is None else abs(ratio - 1), drift_limit)}** |")
    if s["p99_drift"] and "p99_by_span_ms" in next(iter(s["p99_drift"].values())):
        starts = _span_starts(s["seconds"], s["span_s"])
        lines += ["", f"p99 ms of the 200s to the requests due in each {s['span_s']:g} s span (the first is the "
                  "warm-up); the spread between spans shows what the drift check can tell apart:", "",
                  "| model | " + " | ".join(f"{start:g}-{start + s['span_s']:g} s" for start in starts)
                  + " | max / min after warm-up |", "|---|" + "---|" * (len(starts) + 1)]
        for model, d in s["p99_drift"].items():
            spans = d["p99_by_span_ms"]
            settled = [v for start, v in zip(starts, spans) if start >= s["warmup_s"] and v]
            spread = f"{max(settled) / min(settled):.2f} x" if settled else "n/a"
            lines.append(f"| {model} | " + " | ".join(_ms(v) for v in spans) + f" | {spread} |")
    if s.get("error_reasons"):
        lines += ["", "Errors, with the reason the server gave:", "", "| model | status | reason | count |",
                  "|---|---|---|---|"]
        lines += [f"| {e['model']} | {e['status']} | {_cell(e['reason'] or '(none)')} | {e['count']} |"
                  for e in s["error_reasons"][:20]]
    lines += ["", "| model | sent/s | goodput (200/s) | 200 p50 / p99 ms | answers |", "|---|---|---|---|---|"]
    for model, m in s["by_model"].items():
        ok = m["latency_200_ms"]
        lines.append(f"| {model} | {m['sent_per_s']:.1f} | {m['goodput']:.1f} | {_cuts(ok, 'p50', 'p99')} | "
                     f"{_counts(m['counts'])} |")
    models = s["models"]
    lines += ["", "Per window (RSS at its end; requests due in it, their errors and the p50 / p99 ms of their 200s):",
              "", f"| t (s) | RSS MiB | requests | errors | {' | '.join(models)} |",
              "|---|---|---|---|" + "---|" * len(models)]
    lines += [f"| {w['t']:g} | {_ms(w['rss_mb'])} | {w['all']['requests']} | {w['all']['errors']} | "
              + " | ".join(f"{_ms(w[m]['p50_ms'])} / {_ms(w[m]['p99_ms'])}" for m in models) + " |"
              for w in s["windows"]]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------- main
def parse_rates(text: str) -> dict[str, float]:
    return {name: float(value) for name, value in (item.split("=", 1) for item in text.split(","))}


def public_arguments(argv: Sequence[str]) -> list[str]:
    """The command line without the frozen install's path (a path of the machine that ran it)."""
    shown = list(argv)
    for index, argument in enumerate(shown):
        if argument.startswith("--server-pythonpath"):
            shown[index] = "--server-pythonpath=SITE" if "=" in argument else argument
            if "=" not in argument and index + 1 < len(shown):
                shown[index + 1] = "SITE"
    return shown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=lambda text: text.split(","), default=list(SOURCES),
                        help=f"comma-separated, of {', '.join(SOURCES)} (default: all)")
    parser.add_argument("--soak", type=float, metavar="SECONDS", help="run the soak (one server, all models) instead")
    parser.add_argument("--rates", type=parse_rates, help="soak: peak goodput per model, sentiment=X,ner=Y,... "
                                                          "(default: measured first)")
    parser.add_argument("--soak-load", type=float, default=0.8,
                        help="soak: each model's rate as a share of its peak (default 0.8; the models share the cores)")
    parser.add_argument("--soak-period", type=float, metavar="SECONDS",
                        help="soak: repeat the arrivals every SECONDS (default: the span compared, 60 s; 0: fresh "
                             "arrivals throughout)")
    parser.add_argument("--seconds-scale", type=float, default=1.0, help="multiply every phase's length")
    parser.add_argument("--smoke", action="store_true", help="every phase a few seconds, results under --work")
    parser.add_argument("--server-pythonpath", help="PYTHONPATH of the server (a frozen install of the code)")
    parser.add_argument("--server-commit", help="the commit that frozen install was made from, for the report")
    parser.add_argument("--server-setting", dest="server_settings", action="append", type=parse_setting,
                        default=[], metavar="KEY=VALUE", help="a server: key of the config, e.g. "
                                                              "max_refusals_per_second=0 or engine=process "
                                                              "(repeatable)")
    parser.add_argument("--work", type=Path, default=WORK)
    parser.add_argument("--out", type=Path, help="results path without suffix (default: bench/results-overload, "
                                                 "bench/results-soak; under --work with --smoke)")
    parser.add_argument("--report-only", action="store_true", help="rewrite the .md (and .png) from the saved .json")
    args = parser.parse_args(argv)
    args.server_settings = dict(args.server_settings)
    unknown = set(args.models) - set(SOURCES) | set(args.rates or {}) - set(args.models)
    if unknown:
        parser.error(f"unknown or unserved model(s): {', '.join(sorted(unknown))}")
    if args.rates and set(args.rates) != set(args.models):
        parser.error("--rates needs a rate for every model of --models")
    name = "results-soak" if args.soak else "results-overload"
    out = args.out or (args.work / f"smoke-{name}" if args.smoke else BENCH / name)
    render = soak_report if args.soak else report
    if args.report_only:
        results = json.loads(out.with_suffix(".json").read_text())
        out.with_suffix(".md").write_text(render(results))
        if args.soak:
            plot_soak(results, out.with_suffix(".png"))
        return 0
    phases = Phases().scaled(args.seconds_scale * (0.15 if args.smoke else 1.0))
    args.work.mkdir(parents=True, exist_ok=True)
    ensure_models(args.models)
    # SIGTERM unwinds like Ctrl-C, through the finally blocks that stop the servers
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                 cwd=ROOT, check=False).stdout.strip(),
        "dirty": subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "core", "app"], cwd=ROOT,
                                check=False).returncode != 0,
        "command": shlex.join(["python", "bench/overload.py",
                               *public_arguments(sys.argv[1:] if argv is None else argv)]),
        "machine": recording.machine(), "server_pythonpath": bool(args.server_pythonpath),
        "server_commit": args.server_commit,
        "server_settings": args.server_settings,
        "phases": asdict(phases), "targets": TARGETS, "batch": BATCH,
    }
    if args.soak:
        results["figure"] = out.with_suffix(".png").name
    try:
        if args.soak:
            results["soak"] = soak(args, phases)
        else:
            results["models"] = {model: measure(model, args, phases) for model in args.models}
    finally:
        for server in list(Server.running):
            server.stop()
    recording.save(out, results, render)
    if args.soak:
        plot_soak(results, out.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
