"""Memory soak: resident memory of a real ``modeldeploy serve`` under varied traffic, over minutes.

Starts the server (sentiment by default, base-size offline model) as its own process group,
drives it with ``--clients`` closed-loop clients (each sends its next request when answered), each
request one text of a random length in [``--min-chars``, ``--max-chars``] characters, and samples
the server's VmRSS (``/proc/PID/status``) and the items answered every ``--sample-seconds``. Each
invocation records one run under ``--label`` in ``results-memory.json`` (runs of other labels are
kept) and re-renders ``results-memory.md`` and ``results-memory.png`` from every run recorded.

    .venv/bin/python bench/memory_soak.py                    # 10 minutes, the working tree's code
    .venv/bin/python bench/memory_soak.py --server-pythonpath /tmp/memfix-site --label with-fix
    .venv/bin/python bench/memory_soak.py --server-pythonpath /tmp/head-site --minutes 5 --label before-fix
    .venv/bin/python bench/memory_soak.py --throughput-ab before=/tmp/head-site after=/tmp/memfix-site

``--server-pythonpath`` runs the server on a frozen copy of the code (``pip install --no-deps
--target DIR``) instead of the editable install. The slope is a least-squares fit of RSS against
time after ``--warmup-seconds`` (the allocator and torch grow to their working set first); the
last-half slope says whether memory has levelled off; the slope of the per-minute maxima follows
the envelope (single samples scatter by one batch's activations). ``--throughput-ab`` measures
items/s of two frozen codes side by side (wrk, alternating servers) instead of a soak.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import platform
import random
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

LISTENING_PREFIX = "modeldeploy listening on "


# ---------------------------------------------------------------------- traffic
def _words() -> list[str]:
    import corpus  # the benchmark's vocabulary: words the small offline tokenizers know

    return corpus.WORDS


def varied_text(rng: random.Random, words: list[str], min_chars: int, max_chars: int) -> str:
    """A text of exactly ``rng.randint(min_chars, max_chars)`` characters, made of corpus words."""
    size = rng.randint(min_chars, max_chars)
    parts: list[str] = []
    total = 0
    while total < size:
        word = rng.choice(words)
        parts.append(word)
        total += len(word) + 1
    return " ".join(parts)[:size]


class Clients:
    """``count`` closed-loop clients on keep-alive connections; counts answers by status."""

    def __init__(self, host: str, port: int, model: str, count: int, min_chars: int, max_chars: int,
                 fixed_text: bool, seed: int = 0) -> None:
        self.host, self.port, self.model = host, port, model
        self.min_chars, self.max_chars, self.fixed_text = min_chars, max_chars, fixed_text
        self.words = _words()
        self.lock = threading.Lock()
        self.ok = 0
        self.chars = 0
        self.statuses: dict[str, int] = {}
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._client, args=(seed + i,), daemon=True) for i in range(count)]

    def start(self) -> "Clients":
        for thread in self.threads:
            thread.start()
        return self

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(180)

    def _client(self, seed: int) -> None:
        rng = random.Random(seed)
        fixed = varied_text(random.Random(12345), self.words, 1000, 1000)
        connection = http.client.HTTPConnection(self.host, self.port, timeout=120)
        while not self.stop.is_set():
            text = fixed if self.fixed_text else varied_text(rng, self.words, self.min_chars, self.max_chars)
            body = json.dumps({"model_name": self.model, "data": text})
            try:
                connection.request("POST", "/predict", body=body, headers={"Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                status = str(response.status)
            except (OSError, http.client.HTTPException) as exc:
                connection.close()
                if self.stop.is_set():  # the server is being stopped under the last request
                    break
                connection = http.client.HTTPConnection(self.host, self.port, timeout=120)
                with self.lock:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                time.sleep(0.5)
                continue
            with self.lock:
                self.statuses[status] = self.statuses.get(status, 0) + 1
                if status == "200":
                    self.ok += 1
                    self.chars += len(text)
        connection.close()


# ---------------------------------------------------------------------- server
class SoakServer:
    """``python -m modeldeploy serve --port 0`` in its own session; stopped by process group."""

    def __init__(self, config: Path, log_path: Path, env: dict[str, str]) -> None:
        self.command = [sys.executable, "-m", "modeldeploy", "serve", "--config", str(config),
                        "--host", "127.0.0.1", "--port", "0"]
        self.env = env
        self.log_path = log_path
        self.port = 0
        self._listening = threading.Event()

    def start(self, timeout: float = 300) -> "SoakServer":
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        env=self.env, start_new_session=True, cwd=ROOT)
        threading.Thread(target=self._read, daemon=True).start()
        if not self._listening.wait(timeout) or not self.port:
            self.stop()
            raise RuntimeError(f"server did not start; see {self.log_path}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}; see {self.log_path}")
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                connection.request("GET", "/health/ready")
                if connection.getresponse().status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"server not ready after {timeout}s; see {self.log_path}")

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.log.write(line)
            self.log.flush()
            if line.startswith(LISTENING_PREFIX) and not self.port:
                self.port = int(line[len(LISTENING_PREFIX):].strip().rsplit(":", 1)[1].strip("/"))
                self._listening.set()
        self._listening.set()

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def stop(self) -> None:
        group = self.process.pid
        try:
            os.killpg(group, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait(10)
        self.log.close()


# ---------------------------------------------------------------------- figures
def slope_mb_per_min(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, MB) points, in MB per minute."""
    if len(points) < 3:
        return None
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mean_x) ** 2 for x in xs)
    if var == 0:
        return None
    return 60 * sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / var


def summarize(samples: list[dict[str, float]], warmup: float) -> dict[str, Any]:
    steady = [(s["t"], s["rss_mb"]) for s in samples if s["t"] >= warmup]
    end = samples[-1]["t"]
    second_half = [(t, m) for t, m in steady if t >= warmup + (end - warmup) / 2]
    duration = end - samples[0]["t"]
    items = samples[-1]["items"] - samples[0]["items"]
    # per-minute maxima: the batch path's working set comes and goes within seconds (a batch of
    # eight 2,000-character texts needs ~100 MB for its activations), so single samples scatter;
    # growth shows in the envelope
    minutes: dict[int, float] = {}
    for s in samples:
        if s["t"] >= warmup:
            key = int((s["t"] - warmup) // 60)
            minutes[key] = max(minutes.get(key, 0.0), s["rss_mb"])
    whole = [k for k in minutes if warmup + (k + 1) * 60 <= end + 1e-6]
    return {
        "rss_start_mb": samples[0]["rss_mb"],
        "rss_after_warmup_mb": steady[0][1] if steady else None,
        "rss_end_mb": samples[-1]["rss_mb"],
        "rss_max_mb": max(s["rss_mb"] for s in samples),
        "slope_mb_per_min": slope_mb_per_min(steady),
        "slope_second_half_mb_per_min": slope_mb_per_min(second_half),
        "minute_max_mb": [round(minutes[k], 1) for k in sorted(whole)],
        "minute_max_slope_mb_per_min": slope_mb_per_min([(warmup + 60 * k + 30, minutes[k]) for k in sorted(whole)]),
        "items_per_s": items / duration if duration else None,
        "seconds": duration,
    }


def machine() -> dict[str, Any]:
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    memory_gb = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024
    return {"cpu": cpu, "nproc": os.cpu_count(), "cores_usable": len(os.sched_getaffinity(0)),
            "memory_gb": round(memory_gb, 1), "python": platform.python_version(), "torch": torch.__version__,
            "glibc": "-".join(platform.libc_ver()), "date": datetime.date.today().isoformat()}


# ---------------------------------------------------------------------- throughput A/B
def throughput_ab(variants: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    """wrk (closed loop) against a server on each PYTHONPATH in ``variants``, alternating A B B A ...
    so that both see the same machine load; the bench corpus (5-60 words, as in results.md) and
    the soak's varied texts (1-2,000 characters), at each of ``args.ab_concurrency``."""
    import corpus
    import loadgen

    args.work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(3)
    varied = args.work / "memory-soak-varied-bodies.jsonl"
    varied.write_text("".join(json.dumps({"model_name": args.model, "data": varied_text(
        rng, _words(), args.min_chars, args.max_chars)}) + "\n" for _ in range(512)))
    bodies = {"corpus 5-60 words": corpus.write_bodies(args.work / f"{args.model}-bodies.jsonl", args.model),
              f"varied {args.min_chars}-{args.max_chars} chars": varied}
    config = args.work / "memory-soak-ab.yaml"
    config.write_text(json.dumps({"serve": [args.model],
                                  "models": {args.model: {"source": str(args.models_dir / args.model)}}}))
    labels = list(variants)
    order = [label for r in range(args.ab_rounds) for label in (labels if r % 2 == 0 else labels[::-1])]
    runs: list[dict[str, Any]] = []
    for label in order:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
               "PYTHONPATH": variants[label]}
        server = SoakServer(config, args.work / f"memory-soak-ab-{label}.log", env).start()
        try:
            url = f"http://127.0.0.1:{server.port}"
            loadgen.wrk(url, bodies["corpus 5-60 words"], 8, args.ab_warmup_seconds)  # warm-up, not recorded
            for traffic, path in bodies.items():
                for concurrency in args.ab_concurrency:
                    result = loadgen.wrk(url, path, concurrency, args.ab_seconds)
                    row = {"code": label, "traffic": traffic, "concurrency": concurrency,
                           "items_per_s": result["items_per_s"], "p50_ms": result["p50_ms"],
                           "p95_ms": result["p95_ms"], "statuses": result["statuses"]}
                    runs.append(row)
                    print(json.dumps(row), flush=True)
        finally:
            server.stop()
    return {"variants": variants, "order": order, "seconds": args.ab_seconds, "runs": runs,
            "machine": machine(), "command": " ".join(shlex.quote(a) for a in [".venv/bin/python", "bench/memory_soak.py", *sys.argv[1:]])}


def ab_table(ab: dict[str, Any]) -> list[str]:
    cells: dict[tuple[str, int], dict[str, list[float]]] = {}
    for row in ab["runs"]:
        cells.setdefault((row["traffic"], row["concurrency"]), {}).setdefault(row["code"], []).append(row["items_per_s"])
    labels = list(ab["variants"])
    lines = ["| traffic | clients | " + " | ".join(f"{label} items/s (each run)" for label in labels)
             + f" | {labels[-1]} / {labels[0]} (means) |", "|---|---|" + "---|" * (len(labels) + 1)]
    for (traffic, concurrency), by_code in cells.items():
        means = [sum(by_code.get(label, [0])) / max(1, len(by_code.get(label, []))) for label in labels]
        ratio = means[-1] / means[0] if means[0] else float("nan")
        lines.append(f"| {traffic} | {concurrency} | " + " | ".join(
            f"{mean:.1f} ({', '.join(f'{v:.1f}' for v in by_code.get(label, []))})" for label, mean in zip(labels, means))
            + f" | {ratio:.2f} |")
    return lines


# ---------------------------------------------------------------------- report
def write_report(results: dict[str, Any], out: Path) -> None:
    runs = results["runs"]
    for run in runs.values():  # figures always from the samples, by this version of summarize
        run["summary"] = summarize(run["samples"], run["settings"]["warmup_seconds"])
    order = sorted(runs, key=lambda label: runs[label]["started"])
    lines = [
        "# Memory under varied traffic (soak)",
        "",
        "Produced by `bench/memory_soak.py` (see its docstring); each run's exact command line is below.",
        "A real `modeldeploy serve` process (its own process group) answers closed-loop clients, each",
        "request one text of a random length; the server's VmRSS (`/proc/PID/status`) and the items",
        "answered are sampled every few seconds. Slopes are least-squares fits of RSS against time after",
        "the warm-up; \"last half\" fits only the second half of the run (a plateau reads ~0).",
        "",
        "The machine is shared (2 cores, other engineers' work running): items/s are noisy and only",
        "comparable within a run; memory is what this benchmark measures.",
        "",
        "![RSS over time](results-memory.png)",
        "",
        "| run | code | minutes | clients | text chars | RSS after warm-up MB | RSS end MB | max MB |"
        " slope MB/min | last-half slope MB/min | per-minute max slope MB/min | items/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def fmt(value: Any, digits: int = 1) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    for label in order:
        run = runs[label]
        s, a = run["summary"], run["settings"]
        chars = "fixed 1000" if a["fixed_text"] else f"{a['min_chars']}-{a['max_chars']}"
        lines.append(
            f"| {label} | {run['code']} | {s['seconds'] / 60:.1f} | {a['clients']} | {chars} | "
            f"{fmt(s['rss_after_warmup_mb'])} | {fmt(s['rss_end_mb'])} | {fmt(s['rss_max_mb'])} | "
            f"{fmt(s['slope_mb_per_min'], 2)} | {fmt(s['slope_second_half_mb_per_min'], 2)} | "
            f"{fmt(s['minute_max_slope_mb_per_min'], 2)} | {fmt(s['items_per_s'], 2)} |")
    lines += ["", "Per-minute maximum RSS after the warm-up (MB):", ""]
    for label in order:
        lines.append(f"- {label}: {', '.join(f'{v:.0f}' for v in runs[label]['summary']['minute_max_mb'])}")
    lines += ["", "## How each run was taken", ""]
    for label in order:
        run = runs[label]
        m = run["machine"]
        lines += [
            f"**{label}** ({run['started']}): `{run['command']}`",
            "",
            f"- server environment: {json.dumps(run['server_env']) if run['server_env'] else 'default'}; "
            f"warm-up excluded from the slope: {run['settings']['warmup_seconds']:.0f} s; "
            f"statuses: {json.dumps(run['statuses'])}; client errors: {run['client_errors']}",
            f"- machine: {m['cpu']}, nproc {m['nproc']}, {m['memory_gb']} GiB, Python {m['python']}, "
            f"torch {m['torch']}, {m['glibc']}; load average before/after: "
            f"{' / '.join(f'{x:.1f}' for x in run['load_before'])} -> "
            f"{' / '.join(f'{x:.1f}' for x in run['load_after'])}",
            "",
        ]
    titles = {"throughput_ab": "the fix",
              "throughput_ab_trim_every_pass": "malloc_trim after every pass (rejected version)"}
    for key in sorted((k for k in results if k.startswith("throughput_ab")), key=lambda k: k != "throughput_ab"):
        ab = results[key]
        m = ab["machine"]
        lines += [f"## Throughput before and after, side by side: {titles.get(key, key)}", "",
                  f"`{ab['command']}`: one server at a time, in the order {', '.join(ab['order'])} (alternating, so",
                  f"both codes see the same machine load), wrk closed loop, {ab['seconds']:.0f} s per point after a warm-up.",
                  f"Code: {', '.join(f'{k} = PYTHONPATH {v}' for k, v in ab['variants'].items())}. Machine: {m['cpu']},",
                  f"nproc {m['nproc']}, torch {m['torch']}.", "", *ab_table(ab), ""]
    if results.get("notes"):
        lines += ["## Notes", "", results["notes"].strip(), ""]
    (out / "results-memory.md").write_text("\n".join(lines))
    plot(results, out / "results-memory.png")


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (memory, rate) = plt.subplots(2, 1, figsize=(9, 7), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    for label, run in sorted(results["runs"].items(), key=lambda kv: kv[1]["started"]):
        samples = run["samples"]
        minutes = [s["t"] / 60 for s in samples]
        slope = run["summary"]["slope_mb_per_min"]
        memory.plot(minutes, [s["rss_mb"] for s in samples],
                    label=f"{label} ({slope:+.2f} MB/min)" if slope is not None else label)
        rates = [(b["items"] - a["items"]) / (b["t"] - a["t"]) for a, b in zip(samples, samples[1:])]
        rate.plot(minutes[1:], rates, label=label, linewidth=0.8)
    memory.set_ylabel("server VmRSS (MB)")
    memory.set_title("modeldeploy serve, sentiment (base), varied text lengths")
    memory.legend()
    memory.grid(alpha=0.3)
    rate.set_ylabel("items/s")
    rate.set_xlabel("minutes")
    rate.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


# ---------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--label", default="fixed-code")
    parser.add_argument("--code", default=None, help="what code the server runs, for the table (default: derived)")
    parser.add_argument("--model", default="sentiment")
    parser.add_argument("--models-dir", type=Path, default=BENCH / ".work" / "models")
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--min-chars", type=int, default=1)
    parser.add_argument("--max-chars", type=int, default=2000)
    parser.add_argument("--fixed-text", action="store_true", help="every request the same 1000-character text")
    parser.add_argument("--sample-seconds", type=float, default=5)
    parser.add_argument("--warmup-seconds", type=float, default=60)
    parser.add_argument("--server-pythonpath", default=None, help="PYTHONPATH of the server (a frozen copy of the code)")
    parser.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment variable of the server (repeatable)")
    parser.add_argument("--out", type=Path, default=BENCH)
    parser.add_argument("--work", type=Path, default=BENCH / ".work")
    parser.add_argument("--notes", default=None, help="file whose text becomes the report's Notes section")
    parser.add_argument("--render-only", action="store_true", help="re-render md/png from the json")
    parser.add_argument("--throughput-ab", nargs=2, metavar="LABEL=PYTHONPATH", default=None,
                        help="instead of a soak: wrk throughput of two frozen codes, side by side")
    parser.add_argument("--ab-rounds", type=int, default=2)
    parser.add_argument("--ab-seconds", type=float, default=10)
    parser.add_argument("--ab-warmup-seconds", type=float, default=3)
    parser.add_argument("--ab-concurrency", type=lambda text: [int(c) for c in text.split(",")], default=[8])
    args = parser.parse_args(argv)

    results_path = args.out / "results-memory.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {"runs": {}}
    if args.notes:
        results["notes"] = Path(args.notes).read_text()
    if args.render_only:
        write_report(results, args.out)
        results_path.write_text(json.dumps(results, indent=1))
        return 0

    if args.throughput_ab:
        results["throughput_ab"] = throughput_ab(dict(item.split("=", 1) for item in args.throughput_ab), args)
        write_report(results, args.out)
        results_path.write_text(json.dumps(results, indent=1))
        return 0

    if not (args.models_dir / args.model / "config.json").exists():
        subprocess.run([sys.executable, "-m", "modeldeploy.testing", "build", str(args.models_dir), "--size", "base"],
                       check=True)
    args.work.mkdir(parents=True, exist_ok=True)
    config = args.work / f"memory-soak-{args.label}.yaml"
    config.write_text(json.dumps({"serve": [args.model],
                                  "models": {args.model: {"source": str(args.models_dir / args.model)}}}))
    server_env: dict[str, str] = dict(item.split("=", 1) for item in args.server_env)
    if args.server_pythonpath:
        server_env["PYTHONPATH"] = args.server_pythonpath
    elif os.environ.get("PYTHONPATH"):
        server_env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **server_env}
    code = args.code or (f"PYTHONPATH={server_env['PYTHONPATH']}" if "PYTHONPATH" in server_env else "editable install")
    command = " ".join(shlex.quote(part) for part in [".venv/bin/python", "bench/memory_soak.py", *sys.argv[1:]])
    if os.environ.get("PYTHONPATH"):
        command = f"PYTHONPATH={os.environ['PYTHONPATH']} {command}"

    load_before = os.getloadavg()
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    server = SoakServer(config, args.work / f"memory-soak-{args.label}.log", env).start()
    samples: list[dict[str, float]] = []
    clients = None
    try:
        clients = Clients("127.0.0.1", server.port, args.model, args.clients, args.min_chars, args.max_chars,
                          args.fixed_text).start()
        t0 = time.monotonic()
        end = t0 + args.minutes * 60
        while True:
            now = time.monotonic()
            with clients.lock:
                items = clients.ok
            sample = {"t": round(now - t0, 2), "rss_mb": round(server.rss_mb(), 2), "items": items}
            samples.append(sample)
            print(json.dumps(sample), flush=True)
            if now >= end:
                break
            time.sleep(min(args.sample_seconds, max(0.0, end - time.monotonic())))
    finally:
        if clients is not None:
            clients.stop.set()
        server.stop()
        if clients is not None:
            clients.finish()
    run = {
        "started": started,
        "command": command,
        "code": code,
        "server_env": server_env,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": machine(),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "statuses": clients.statuses if clients else {},
        "client_errors": len(clients.errors) if clients else 0,
        "samples": samples,
        "summary": summarize(samples, args.warmup_seconds),
    }
    results["runs"][args.label] = run
    write_report(results, args.out)
    results_path.write_text(json.dumps(results, indent=1))
    print(json.dumps({args.label: run["summary"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
