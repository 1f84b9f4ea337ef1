"""Where a server's CPU goes under load: py-spy samples every Python thread while wrk drives it,
and each thread's CPU seconds (from /proc) are split across what its samples were doing.

A sample says what a thread was running; /proc says how much CPU the thread used. Together they
give CPU milliseconds per answered request in each part of the request path (the HTTP front,
parsing, tokenizing, batching and planning, the forward pass, postprocessing), which add up to
the process's CPU. Threads py-spy does not see are native: torch's intra-op pool (the forward
pass's other cores) and the tokenizers' pool. Stacks caught waiting (a lock, a condition, poll)
are counted apart and not charged any CPU. py-spy runs ``--nonblocking`` (reading the server's
memory without pausing it, so the server runs at its usual pace) and without ``--idle`` (sleeping
threads are not unwound: a server has a hundred of them).
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import loadgen
from servers import Server, cpu_seconds

PY_SPY = Path(sys.executable).with_name("py-spy")
#: Samples per second of each thread. py-spy's cost grows with the rate times the threads (a
#: server has ~140): on 2 cores at 200/s it took most of a core and the server, whose torch
#: threads then stall in each other's barriers, answered a tenth of its requests; at 20/s it
#: takes ~15% of a core and the server keeps ~85% of its throughput.
RATE = 20
#: Buckets, in the order the report lists them.
HTTP, PARSING, TOKENIZING, BATCHING, FORWARD, POSTPROCESS, OTHER, NATIVE = (
    "HTTP front (waitress, sockets)", "request parsing and validation (Flask, JSON, inputs)", "tokenizing",
    "batching and planning", "forward pass (its Python thread)", "postprocessing and JSON encoding",
    "other (metrics, logging, ...)", "native threads (torch intra-op pool, tokenizers pool)")
BUCKETS = (HTTP, PARSING, TOKENIZING, BATCHING, FORWARD, POSTPROCESS, OTHER, NATIVE)
#: A leaf frame that is a thread waiting, not working.
WAITING = re.compile(r"^(\S+\.)?(wait|acquire|poll|poll2|select|sleep|_wait_for_tstate_lock|accept)\b")
#: (pattern on "function (file:line)", bucket), tried on each frame from the leaf up; the first
#: frame that matches any pattern decides (so a tokenizer called from the forward-pass code is
#: tokenizing, and JSON encoding inside Flask is encoding).
RULES = [
    (re.compile(r"tokeniz|token_lengths"), TOKENIZING),
    (re.compile(r"\(torch/|transformers/(models|modeling|generation|integrations|pytorch)"), FORWARD),
    (re.compile(r"json/encoder|\bdumps \(|jsonsafe|postprocess|jsonify|to_jsonable|batch_decode"), POSTPROCESS),
    (re.compile(r"json/decoder|\bloads \(|core/inputs|prepare_texts|prepare_data|get_json"), PARSING),
    (re.compile(r"batch_planner|core/batching"), BATCHING),
    (re.compile(r"prometheus_client|core/metrics|logging/"), OTHER),
    (re.compile(r"\((flask|werkzeug|app)/"), PARSING),
    (re.compile(r"\(waitress/|http_server|socket|ssl\.py"), HTTP),
]
#: A thread's CPU when none of its samples is classified: what its role mostly does.
ROLES = [(re.compile(r"^waitress|^MainThread"), HTTP), (re.compile(r"batcher"), FORWARD)]


#: A process frame of py-spy's raw output, ahead of the thread's: ``process PID:"command line";``.
PROCESS_FRAME = re.compile(r'process \d+:"[^"]*";')


def classify(frames: list[str]) -> str | None:
    """The bucket of one stack (root first), or None when the thread was waiting."""
    if frames and WAITING.match(frames[-1]):
        return None
    for frame in reversed(frames):
        for pattern, bucket in RULES:
            if pattern.search(frame):
                return bucket
    return OTHER


def parse(raw: str) -> dict[int, tuple[str, Counter[str | None]]]:
    """py-spy's raw output (``--threads``, ``--subprocesses``) -> by native thread id: its name and
    samples per bucket. A thread of a child process (a process-engine worker) is named
    ``worker/NAME``: its main thread is not the front's."""
    threads: dict[int, tuple[str, Counter[str | None]]] = {}
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        # the server's process, then each child down to the thread's; a command line may hold ";"
        processes = PROCESS_FRAME.findall(stack)
        frames = PROCESS_FRAME.sub("", stack).split(";")
        match = re.match(r"thread \((\d+)\): ?(.*)", frames[0]) if frames else None
        if match is None or not count.isdigit():
            continue
        tid, name = int(match.group(1)), match.group(2)
        if len(processes) > 1:
            name = f"worker/{name}"
        threads.setdefault(tid, (name, Counter()))[1][classify(frames[1:])] += int(count)
    return threads


def thread_cpu(pids: list[int]) -> dict[int, float]:
    """CPU seconds so far of every thread of ``pids``, by thread id."""
    return {int(task.name): cpu_seconds(task / "stat")
            for pid in pids for task in Path(f"/proc/{pid}/task").glob("[0-9]*")}


def measure(server: Server, bodies: Path, concurrency: int, seconds: float, rate: int = RATE) -> dict[str, Any]:
    """Profile ``server`` under ``concurrency`` closed-loop clients for ``seconds`` (py-spy's raw
    stacks are kept beside the server's log)."""
    run: dict[str, Any] = {}
    stacks = server.log_path.with_suffix(".py-spy.txt")
    load = threading.Thread(target=lambda: run.update(loadgen.wrk(server.url, bodies, concurrency, seconds + 1)))
    pids = server.pids()
    before = thread_cpu(pids)
    before_by_process = {pid: cpu_seconds(Path(f"/proc/{pid}/stat")) for pid in pids}
    load.start()
    profile = subprocess.run([str(PY_SPY), "record", "--format", "raw", "--rate", str(rate), "--duration",
                              str(round(seconds)), "--pid", str(pids[0]), "--subprocesses", "--threads",
                              "--nonblocking", "--output", str(stacks)], capture_output=True, text=True)
    load.join()
    after = thread_cpu(pids)
    by_process = {pid: cpu_seconds(Path(f"/proc/{pid}/stat")) - cpu for pid, cpu in before_by_process.items()}
    used = {tid: after[tid] - before.get(tid, 0.0) for tid in after}
    requests = max(run.get("ok", 0), 1)
    result: dict[str, Any] = {"concurrency": concurrency, "seconds": seconds, "rate": rate,
                              "requests": run.get("ok", 0), "items_per_s": run.get("items_per_s", 0.0),
                              "cpu_ms_per_request": sum(used.values()) / requests * 1000,
                              # the server's own process (the HTTP front) and its children (the
                              # process engine's model workers), apart: is the front the limit?
                              "front_cpu_ms_per_request": by_process[pids[0]] / requests * 1000,
                              "children_cpu_ms_per_request": sum(by_process[pid] for pid in pids[1:]) / requests * 1000,
                              "front_cores": by_process[pids[0]] / seconds,
                              "py_spy": "ok" if profile.returncode == 0 else profile.stderr.strip()[-400:],
                              "lagged": "behind in sampling" in profile.stderr}
    threads = parse(stacks.read_text()) if profile.returncode == 0 else {}
    result.update(split(threads, used, requests))
    return result


def split(threads: dict[int, tuple[str, Counter[str | None]]], used: dict[int, float],
          requests: int) -> dict[str, Any]:
    """The CPU of each group of alike threads (the HTTP pool's ``waitress-N``, the inference
    thread, the event loop), shared out by the group's working samples: each pool thread is caught
    working only now and then, so pooling their samples is what makes the split precise. The CPU
    of threads py-spy never saw is native."""
    groups: dict[str, tuple[float, Counter[str | None]]] = {}
    for tid, (name, samples) in threads.items():
        group = re.sub(r"-\d+$", "", name)
        cpu, pooled = groups.get(group, (0.0, Counter()))
        groups[group] = (cpu + used.get(tid, 0.0), pooled + samples)
    by_bucket: dict[str, float] = defaultdict(float)
    for group, (cpu, samples) in groups.items():
        working = {bucket: n for bucket, n in samples.items() if bucket is not None}
        if not working:
            by_bucket[next((b for pattern, b in ROLES if pattern.search(group)), OTHER)] += cpu
        for bucket, n in working.items():
            by_bucket[bucket] += cpu * n / sum(working.values())
    by_bucket[NATIVE] += sum(cpu for tid, cpu in used.items() if tid not in threads)
    cpu_total = sum(by_bucket.values()) or 1.0
    waiting = sum(samples[None] for _, samples in groups.values())
    return {"buckets": {bucket: {"cpu_ms_per_request": by_bucket[bucket] / requests * 1000,
                                 "share": by_bucket[bucket] / cpu_total} for bucket in BUCKETS},
            "samples": {"working": sum(sum(samples.values()) for _, samples in groups.values()) - waiting,
                        "waiting": waiting},
            "threads_cpu_ms_per_request": {group: cpu / requests * 1000 for group, (cpu, _) in groups.items()}}
