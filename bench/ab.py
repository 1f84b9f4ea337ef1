"""A/B: the same model, corpus and load against two installs of modeldeploy, interleaved.

Used to show that a change to the request path costs nothing (or what it costs). ``--before``
(and optionally ``--after``) name a folder holding an install of the ``modeldeploy`` package
(``pip install --no-deps --target DIR <checkout>``), put first on that server's ``PYTHONPATH``;
without ``--after`` the "after" server runs the package installed in this environment. Freeze
both when the working tree may change while the benchmark runs. Each server runs alone; the
versions alternate A B B A A B B A (``--rounds``) so that drift of the shared machine falls on both alike.
``--engine-before``/``--engine-after`` set each side's ``server.engine`` (the same install on both
sides then compares the engines); ``--front-before``/``--front-after`` the HTTP server under the
same app: ``modeldeploy serve``'s (waitress) or granian (bench/granian_app.py), which compares
what the HTTP front costs. CPU per request counts every process of the server.

    pip install --no-deps --target ../before-site <checkout of the other version>
    python bench/ab.py --models-dir bench/.work/models --before ../before-site
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import math
import os
import platform
import statistics
import sys
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import corpus  # noqa: E402
import loadgen  # noqa: E402
import reviews  # noqa: E402
from servers import PYTHON, Server, free_port, parse_setting  # noqa: E402

from modeldeploy.config import parse_config  # noqa: E402

BENCH = Path(__file__).parent
FRONTS = ("waitress", "granian")
CORPORA = {"words": "texts of 5-60 words (bench/corpus.py)",
           "reviews": "review-like texts with a long tail of lengths (bench/reviews.py)"}


def server(version: str, model: str, source: Path, work: Path, sites: dict[str, Path | None], run: int,
           legacy_config: bool, engine: str = "local", front: str = "waitress",
           beside: dict[str, Path] | None = None, settings: dict[str, Any] | None = None) -> Server:
    """``modeldeploy serve`` of one version, with the default batching and HTTP pool; or its app
    under granian with as many app threads. ``beside``: other models the server also serves (idle)."""
    port = free_port()
    config = work / f"ab-{version}-{model}.yaml"
    others = {name: folder for name, folder in (beside or {}).items() if name != model}
    document: dict[str, Any] = {"models": {name: {"source": str(folder)}
                                           for name, folder in {model: source, **others}.items()}}
    if not legacy_config:  # serve only these models (installs from before the 'serve' key refuse it)
        document["serve"] = [model, *others]
    server_settings = {**(settings or {}), **({"engine": engine} if engine != "local" else {})}
    if server_settings:
        document["server"] = server_settings
    config.write_text(json.dumps(document))  # JSON is YAML
    site = sites[version]
    env = {"PYTHONPATH": str(site)} if site is not None else {}
    command = [PYTHON, "-m", "modeldeploy", "serve", "--config", str(config), "--port", str(port)]
    if front == "granian":
        threads = parse_config(document).http_threads(document["serve"])
        env = {"PYTHONPATH": os.pathsep.join([*env.values(), str(BENCH.resolve())]), "BENCH_CONFIG": str(config)}
        command = [PYTHON, "-m", "granian", "--interface", "wsgi", "--workers", "1", "--blocking-threads",
                   str(threads), "--host", "127.0.0.1", "--port", str(port), "--no-ws", "granian_app:app"]
    return Server(f"ab-{version}-{model}-{run}", command, port, "/health/ready", work, env)


def measure(model: str, source: Path, args: argparse.Namespace) -> dict[str, Any]:
    texts = corpus if args.corpus == "words" else reviews
    bodies = texts.write_bodies(args.work / f"ab-{model}-{args.corpus}-bodies.jsonl", model)
    runs: dict[str, dict[int, list[dict[str, Any]]]] = {"before": {}, "after": {}}
    for run, version in enumerate(run_order(args.rounds)):
        under_test = server(version, model, source, args.work, {"before": args.before, "after": args.after},
                            run, args.legacy_config, getattr(args, f"engine_{version}"),
                            getattr(args, f"front_{version}"),
                            {name: args.models_dir / name for name in args.beside},
                            dict(getattr(args, f"server_{version}"))).start()
        try:
            under_test.wait_ready()
            for name in args.beside:  # each model has served, as in a server in use
                answer_one(under_test.url, name)
            loadgen.wrk(under_test.url, bodies, 8, args.warmup_seconds)  # warm-up, not recorded
            for concurrency in args.concurrency:
                cpu = under_test.cpu_seconds()
                result = loadgen.wrk(under_test.url, bodies, concurrency, args.seconds)
                result["cpu_ms_per_request"] = 1000 * (under_test.cpu_seconds() - cpu) / max(1, result["requests"])
                runs[version].setdefault(concurrency, []).append(result)
                print(f"{model} {version} c={concurrency}: {result['items_per_s']:.1f}/s "
                      f"p50 {result['p50_ms']:.1f} p99 {result['p99_ms']:.1f} ms {result['statuses']} "
                      f"cpu {result['cpu_ms_per_request']:.2f} ms/request", flush=True)
        finally:
            under_test.stop()
    return runs


def answer_one(url: str, model: str) -> None:
    """One /predict to ``model``, which must answer 200."""
    body = json.dumps({"model_name": model, "data": reviews.reviews(1)[0]}).encode()
    request = urllib.request.Request(url + "/predict", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        response.read()


def add_two_installs(parser: argparse.ArgumentParser) -> None:
    """``--before`` / ``--after`` (two frozen installs, both required), their labels, how many
    servers of each to run, and the work folder: the arguments of the A/B scripts that run phases
    of bench/overload.py against each install."""
    parser.add_argument("--before", type=Path, required=True, help="folder holding one modeldeploy install")
    parser.add_argument("--after", type=Path, required=True, help="folder holding the other")
    parser.add_argument("--label-before", default="before")
    parser.add_argument("--label-after", default="after")
    parser.add_argument("--rounds", type=int, default=2, help="servers of each install (2: A B B A)")
    parser.add_argument("--work", type=Path, default=BENCH / ".work")


def run_order(rounds: int) -> list[str]:
    """Each version ``rounds`` times, in pairs alternating A B, B A, A B, ...: position effects
    (the first run after a quiet spell, drift of the shared machine) fall on both versions alike."""
    pairs = [("before", "after") if i % 2 == 0 else ("after", "before") for i in range(rounds)]
    return [version for pair in pairs for version in pair]


def summarize(runs: dict[str, dict[int, list[dict[str, Any]]]]) -> dict[str, dict[int, dict[str, float]]]:
    """Per version and concurrency: mean items/s, mean p50 and p99, over the rounds."""
    return {
        version: {
            concurrency: {
                "items_per_s": statistics.mean(r["items_per_s"] for r in results),
                "items_per_s_min": min(r["items_per_s"] for r in results),
                "items_per_s_max": max(r["items_per_s"] for r in results),
                "p50_ms": statistics.mean(r["p50_ms"] for r in results),
                "p99_ms": statistics.mean(r["p99_ms"] for r in results),
                "non_200": sum(sum(v for k, v in r["statuses"].items() if k != "200") for r in results),
                "cpu_ms_per_request": statistics.mean(r.get("cpu_ms_per_request", math.nan) for r in results),
            }
            for concurrency, results in by_concurrency.items()
        }
        for version, by_concurrency in runs.items()
    }


def report(summaries: dict[str, Any], args: argparse.Namespace, load: tuple[float, float]) -> str:
    lines = [
        f"# A/B: {args.label_before} vs {args.label_after}", "",
        f"Produced by `python bench/ab.py` ({datetime.date.today()}): {cpu_name()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, torch {importlib.metadata.version('torch')}, no GPU; "
        f"load average before {load[0]:.1f}, "
        f"after {load[1]:.1f}. Models: each model's folder under `--models-dir`, "
        f"`wrk` closed loop, {CORPORA[args.corpus]}, {args.seconds:g} s per point after a {args.warmup_seconds:g} s "
        f"warm-up; each version served {served_with(args.beside)} with its defaults, one server at a time in the order "
        f"{' '.join('A' if v == 'before' else 'B' for v in run_order(args.rounds))} (A = before, B = after); "
        f"figures are the mean over the {args.rounds} runs of each version. Before: the {args.front_before} "
        f"front, the {args.engine_before} engine; after: the {args.front_after} front, the {args.engine_after} "
        f"engine.{settings_note(args)} {args.note}".rstrip(),
        "",
    ]
    for model, summary in summaries.items():
        lines += [f"## {model}", "", "| concurrency | items/s before (min-max) | items/s after (min-max) | ratio | "
                  "p50 ms before | p50 ms after | p99 ms before | p99 ms after | non-200 before / after | "
                  "server CPU ms/request before / after |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for concurrency in args.concurrency:
            b, a = summary["before"][concurrency], summary["after"][concurrency]
            lines.append(f"| {concurrency} | {b['items_per_s']:.1f} ({b['items_per_s_min']:.1f}-{b['items_per_s_max']:.1f}) | "
                         f"{a['items_per_s']:.1f} ({a['items_per_s_min']:.1f}-{a['items_per_s_max']:.1f}) | "
                         f"{a['items_per_s'] / b['items_per_s']:.2f} | {b['p50_ms']:.1f} | {a['p50_ms']:.1f} | "
                         f"{b['p99_ms']:.1f} | {a['p99_ms']:.1f} | {b['non_200']} / {a['non_200']} | "
                         f"{b.get('cpu_ms_per_request', math.nan):.2f} / {a.get('cpu_ms_per_request', math.nan):.2f} |")
        lines.append("")
    return "\n".join(lines)


def settings_note(args: argparse.Namespace) -> str:
    """The server settings each side was given, for the report."""
    given = [(side, dict(getattr(args, f"server_{side}"))) for side in ("before", "after")]
    return "".join(f" Server settings {side}: `{json.dumps(settings)}`." for side, settings in given if settings)


def served_with(beside: list[str]) -> str:
    """How the report says what else each server served."""
    if not beside:
        return "alone"
    return f"beside {', '.join(beside)} (the same process serving it too, idle; loaded from `--models-dir`)"


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, required=True)
    parser.add_argument("--before", type=Path, required=True, help="folder holding the other modeldeploy install")
    parser.add_argument("--after", type=Path, help="folder holding the install to compare (default: this one)")
    parser.add_argument("--engine-before", choices=("local", "process"), default="local")
    parser.add_argument("--engine-after", choices=("local", "process"), default="local")
    parser.add_argument("--front-before", choices=FRONTS, default="waitress")
    parser.add_argument("--front-after", choices=FRONTS, default="waitress")
    for side in ("before", "after"):
        parser.add_argument(f"--server-{side}", action="append", default=[], type=parse_setting, metavar="KEY=VALUE",
                            help=f"a server setting of the {side} side's config.yaml, e.g. max_refusals_per_second=0")
    parser.add_argument("--corpus", choices=tuple(CORPORA), default="words")
    parser.add_argument("--note", default="", help="a sentence for the report, e.g. which models the folders hold")
    parser.add_argument("--label-before", default="before")
    parser.add_argument("--label-after", default="after")
    parser.add_argument("--models", default="sentiment,ner,summarization")
    parser.add_argument("--beside", type=lambda text: text.split(","), default=[],
                        help="models each server also serves, idle (a server of several models), e.g. ner")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warmup-seconds", type=float, default=3)
    parser.add_argument("--rounds", type=int, default=4, help="runs of each version (4: A B B A A B B A)")
    parser.add_argument("--work", type=Path, default=BENCH / ".work")
    parser.add_argument("--out", type=Path, default=BENCH / "results-ab")
    parser.add_argument("--report-only", action="store_true", help="rewrite the .md from the saved .json runs")
    parser.add_argument("--legacy-config", action="store_true",
                        help="both installs predate config.yaml's 'serve' key (they served exactly the models listed)")
    args = parser.parse_args()
    for side in ("before", "after"):
        if getattr(args, f"front_{side}") == "granian" and getattr(args, f"engine_{side}") != "local":
            parser.error(f"--front-{side} granian serves the app on the local engine only")
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    for option, site in (("--before", args.before), ("--after", args.after)):
        if site is not None and not (site / "modeldeploy" / "__init__.py").is_file():
            parser.error(f"{option} {site} holds no modeldeploy package")
    args.work.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        saved = json.loads(args.out.with_suffix(".json").read_text())
        runs = {m: {v: {int(c): r for c, r in by_c.items()} for v, by_c in by_v.items()}
                for m, by_v in saved["runs"].items()}
        load = tuple(saved["load_average"])
    else:
        before = os.getloadavg()[0]
        runs = {model: measure(model, args.models_dir / model, args) for model in args.models.split(",")}
        load = (before, os.getloadavg()[0])
    summaries = {model: summarize(r) for model, r in runs.items()}
    args.out.with_suffix(".json").write_text(json.dumps({"runs": runs, "summary": summaries, "load_average": load},
                                                        indent=1))
    args.out.with_suffix(".md").write_text(report(summaries, args, load))
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
