"""`make bench`: runs every benchmark, writes bench-results/latest.{md,json}.

Benchmarks report; they do not pass or fail. This script exits 0 even when a target
is missed or a benchmark breaks: the table says so instead.

Each benchmark is a file in tests/bench with a `main(...) -> dict`, run in its own
subprocess with a time limit (helper processes it leaves behind are found by its
session id and stopped). A file that does not exist yet is listed as "not available". A
benchmark's dict may carry "rows", a list of table rows with these keys (all text
except "met"), and the table shows them as they are:

    benchmark, case, result, baseline (the raw baseline measured in the same run),
    target, met (true, false or null)

Without "rows", its scalar figures are listed one per row.

    python tests/bench/run_all.py [--only relay,command_path] [--budget 840]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.bench import machine  # noqa: E402

#: End to end: command acknowledged -> change visible in the read model.
E2E_TARGET_P99_MS = 250.0
E2E_RATE = 500
#: Keys of a benchmark's dict that the table's header already shows.
SHOWN_ELSEWHERE = frozenset(
    {"benchmark", "name", "date", "when", "machine", "called_with", "rows", "met"}
)
#: The whole suite stays well under a quarter of an hour on a two-core machine.
DEFAULT_BUDGET_S = 840.0


@dataclass(frozen=True)
class Bench:
    key: str
    file: str
    title: str
    timeout_s: float
    #: Passed to main() if it takes them (by name, or as --flags if it takes argv).
    arguments: dict[str, Any] = field(default_factory=dict)


BENCHES = (
    Bench("command_path", "bench_command_path.py", "command path", 480),
    Bench("relay", "bench_relay.py", "relay", 150, {"events": 20_000}),
    Bench("end_to_end", "bench_end_to_end.py", "end to end", 180),
    Bench("attribution", "bench_attribution.py", "attribution", 180),
    Bench("rebuild", "bench_rebuild.py", "rebuild", 480, {"events": 1_000_000}),
)

#: Imports the file by its name (so that classes it defines have resolvable topics),
#: calls main() with the arguments it accepts, writes the dict as JSON.
RUNNER = r"""
import importlib, inspect, json, sys
from pathlib import Path

path, out, wanted = Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
sys.path.insert(0, str(path.parent))
sys.argv = [str(path)]
module = importlib.import_module(path.stem)
main = module.main
params = inspect.signature(main).parameters
kwargs = {k: v for k, v in wanted.items() if k in params}
args = []
takes_argv = [p for p in ("argv", "args") if p in params]
if takes_argv and wanted and not kwargs:
    source = path.read_text()
    for k, v in wanted.items():
        flag = "--" + k.replace("_", "-")
        if flag in source:
            args += [flag, str(v)]
    kwargs = {takes_argv[0]: args}
result = main(**kwargs)
if not isinstance(result, dict):
    result = {"result": result}
result.setdefault("called_with", kwargs)
Path(out).write_text(json.dumps(result, default=str))
"""


def run_bench(bench: Bench, timeout_s: float) -> dict[str, Any]:
    """Runs one benchmark file in a subprocess; never raises."""
    path = machine.BENCH_DIR / bench.file
    outcome: dict[str, Any] = {"file": f"tests/bench/{bench.file}"}
    if not path.exists():
        outcome["status"] = "not available"
        return outcome
    if timeout_s < 5:
        outcome["status"] = "skipped: the suite's time budget is spent"
        return outcome
    machine.say(f"=== {bench.title} ({bench.file}, up to {timeout_s:.0f} s)")
    with tempfile.TemporaryDirectory(prefix="closedloop-bench-") as tmp:
        out = Path(tmp) / "result.json"
        began = time.monotonic()
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                RUNNER,
                str(path),
                str(out),
                json.dumps(bench.arguments),
            ],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=sys.stderr,  # progress stays off the table printed on stdout
            stderr=sys.stderr,
            start_new_session=True,  # its own session: leftovers are found by it
        )
        try:
            code = process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            machine.say(f"{bench.file} timed out; stopping it and its helpers")
            _stop(process)
            outcome["status"] = f"timed out after {timeout_s:.0f} s"
            outcome["seconds"] = round(time.monotonic() - began, 1)
            return outcome
        finally:
            _stop_leftovers(process.pid)
        outcome["seconds"] = round(time.monotonic() - began, 1)
        if code != 0 or not out.exists():
            outcome["status"] = f"failed (exit code {code}; see the log above)"
            return outcome
        try:
            outcome["result"] = json.loads(out.read_text())
        except ValueError as error:
            outcome["status"] = f"failed: unreadable result ({error})"
            return outcome
    outcome["status"] = "ok"
    return outcome


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGINT first, so the benchmark's own clean-up runs (databases, services)."""
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGINT)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _session_members(session: int) -> list[int]:
    """Processes still in the benchmark's session: helpers it started and left."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == session:  # fields: state, ppid, pgrp, session
                members.append(int(stat.parent.name))
    return members


def _stop_leftovers(session: int) -> None:
    """Stops, by process id, whatever the benchmark started and did not stop.

    The benchmark runs in a new session whose id is its own process id; Linux does
    not reuse that id while any member of the session is alive.
    """
    for sig in (signal.SIGTERM, signal.SIGKILL):
        members = _session_members(session)
        if not members:
            return
        machine.say(f"stopping leftover helper processes {members} ({sig.name})")
        for pid in members:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        time.sleep(2)


# -- the table -------------------------------------------------------------------------


def rows_for(bench: Bench, outcome: dict[str, Any]) -> list[dict[str, Any]]:
    status = outcome["status"]
    if status != "ok":
        missing: dict[str, Any] = {
            "benchmark": bench.title,
            "case": outcome["file"],
            "result": status,
            "baseline": "",
            "target": "",
            "met": None,
        }
        if bench.key == "end_to_end":
            missing["case"] = f"command ack to read model at {E2E_RATE} commands/s"
            missing["target"] = f"p99 < {E2E_TARGET_P99_MS:.0f} ms"
        return [missing]
    result: dict[str, Any] = outcome["result"]
    given = result.get("rows")
    if isinstance(given, list) and given and all(isinstance(r, dict) for r in given):
        return [_complete(bench, r) for r in given]
    baseline = result.get("baseline", result.get("baselines"))
    rows: list[dict[str, Any]] = []
    for key, value in result.items():
        if key in SHOWN_ELSEWHERE or value is baseline:
            continue
        figures = _flatten(value)
        text = "; ".join(
            f"{name} {_text(figure)}" if name else _text(figure)
            for name, figure in figures
        )
        row: dict[str, Any] = {
            "benchmark": bench.title,
            "case": str(key),
            "result": text,
            "baseline": "",
            "target": "",
            "met": None,
        }
        p99 = [f for name, f in figures if "p99" in f"{key}.{name}"]
        if bench.key == "end_to_end" and p99 and _is_number(p99[0]):
            row["target"] = f"p99 < {E2E_TARGET_P99_MS:.0f} ms"
            row["met"] = float(p99[0]) < E2E_TARGET_P99_MS
        rows.append(row)
    if rows and baseline is not None:
        rows[0]["baseline"] = "; ".join(
            f"{name} {_text(figure)}" if name else _text(figure)
            for name, figure in _flatten(baseline)
        )
    if rows and isinstance(result.get("met"), bool):
        rows[0]["met"] = result["met"]
        rows[0]["target"] = _text(result.get("target", ""))
    return rows or [
        {
            "benchmark": bench.title,
            "case": outcome["file"],
            "result": "no figures returned",
            "baseline": "",
            "target": "",
            "met": None,
        }
    ]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _complete(bench: Bench, row: dict[str, Any]) -> dict[str, Any]:
    met = row.get("met")
    return {
        "benchmark": _text(row.get("benchmark", bench.title)),
        "case": _text(row.get("case", "")),
        "result": _text(row.get("result", row.get("value", ""))),
        "baseline": _text(row.get("baseline", "")),
        "target": _text(row.get("target", "")),
        "met": met if isinstance(met, bool) else None,
    }


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        items: list[tuple[str, Any]] = []
        for key, inner in value.items():
            items.extend(_flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return items
    if isinstance(value, list) and len(value) > 8:
        return [(prefix, f"[{len(value)} items]")]
    return [(prefix, value)]


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".")
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value).replace("|", "/").replace("\n", " ")


def markdown(report: dict[str, Any]) -> str:
    info = report["machine"]
    git = report["git"]
    dirty = {True: ", with uncommitted changes", False: "", None: ""}[git["dirty"]]
    lines = [
        "# closedloop benchmarks",
        "",
        f"- date: {report['date']}",
        f"- commit: {git['commit']}{dirty}",
        (
            f"- machine: {info['cores']} cores ({info['usable_cores']} usable), "
            f"{info['cpu_model']}, {info['memory_gib']} GiB memory, "
            f"{info['python']}, {info['platform']}"
        ),
        f"- scratch data on: {info['scratch_filesystem']}",
        f"- runtime: {report['runtime_s']:.0f} s",
        "",
        "| benchmark | case | result | raw baseline (same run) | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        met = {True: "yes", False: "**no**", None: "-"}[row["met"]]
        cells = [
            row["benchmark"],
            row["case"],
            row["result"],
            row["baseline"] or "-",
            row["target"] or "-",
            met,
        ]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    lines += [
        "",
        (
            "Throughput is calls started in the measured window divided by the "
            "window; latency is send to reply, as the client saw it. Clients run in "
            "separate processes; CPU is the share of one core used during the window, "
            "and machine busy counts every process on the machine, benchmark or not."
        ),
        "",
    ]
    return "\n".join(lines)


def main(only: tuple[str, ...] = (), budget_s: float = DEFAULT_BUDGET_S) -> int:
    started = time.monotonic()
    report: dict[str, Any] = {
        "date": machine.now_utc(),
        "git": machine.git_commit(),
        "machine": {
            **machine.machine_info(),
            "scratch_filesystem": machine.filesystem_of(REPO),
        },
        "benchmarks": {},
        "rows": [],
    }
    for bench in BENCHES:
        if only and bench.key not in only:
            continue
        left = budget_s - (time.monotonic() - started)
        outcome = run_bench(bench, min(bench.timeout_s, left))
        report["benchmarks"][bench.key] = outcome
        report["rows"].extend(rows_for(bench, outcome))
    report["runtime_s"] = round(time.monotonic() - started, 1)
    text = markdown(report)
    machine.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (machine.RESULTS_DIR / "latest.md").write_text(text)
    (machine.RESULTS_DIR / "latest.json").write_text(
        json.dumps(report, indent=2, default=str) + "\n"
    )
    sys.stdout.write(text)
    sys.stdout.flush()
    machine.say(
        f"wrote {machine.RESULTS_DIR / 'latest.md'} and latest.json "
        f"in {report['runtime_s']:.0f} s"
    )
    return 0


def _cli() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated keys: " + ",".join(b.key for b in BENCHES),
    )
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S)
    args = parser.parse_args()
    try:
        return main(tuple(k for k in args.only.split(",") if k), budget_s=args.budget)
    except Exception as error:
        machine.say(f"the benchmark suite broke: {error!r}")
        return 0


if __name__ == "__main__":
    raise SystemExit(_cli())
