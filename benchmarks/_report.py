"""Turning results into markdown tables and PNG plots (matplotlib: benchmark-only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["markdown", "plots"]


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _workload_rows(block: dict[str, Any]) -> list[list[str]]:
    rows = []
    for name, f in block["contenders"].items():
        ratios = block["ratios"].get(name, {})
        rows.append(
            [
                name,
                f"{f['completed']:g}/{f['tasks']:g}",
                _fmt(f.get("timed_out"), 0),
                _fmt(f.get("false_timeouts"), 0),
                _fmt(f["requests_per_task"]),
                _fmt(f["http_429"], 0),
                _fmt(f["latency_p50"], 1),
                _fmt(f["latency_p95"], 1),
                _fmt(f["wall"], 1),
                _fmt(f["cpu"]),
                _fmt(f["cpu_per_request_ms"]),
                _fmt(f["peak_rss_mb"], 0),
                _fmt(ratios.get("cpu_per_request_vs_raw")),
                _fmt(ratios.get("cpu_vs_careful")),
            ]
        )
    return rows


_WORKLOAD_HEADER = [
    "contender",
    "completed",
    "TIMED_OUT",
    "false TIMED_OUT",
    "requests/task",
    "429s",
    "latency p50 (sim s)",
    "p95",
    "wall s",
    "CPU s",
    "CPU ms/req",
    "peak RSS MB",
    "CPU/req vs raw",
    "CPU vs careful",
]


def markdown(results: dict[str, Any]) -> str:
    out: list[str] = []
    meta = results.get("meta", {})
    out.append(f"Run: {meta.get('date', '?')}, {meta.get('machine', '?')}")
    if "workload" in results:
        for size, block in results["workload"]["sizes"].items():
            out += ["", f"### Workload: {size} tasks", ""]
            out += _table(_WORKLOAD_HEADER, _workload_rows(block))
    if "faults" in results:
        out += ["", "### Faults: 10% of status reads fail", ""]
        out += _table(
            [*_WORKLOAD_HEADER[:2], "lost", *_WORKLOAD_HEADER[2:-2]],
            [
                [*row[:2], _fmt(results["faults"]["contenders"][row[0]]["lost"], 0), *row[2:-2]]
                for row in _workload_rows(results["faults"])
            ],
        )
    if "saturated" in results:
        out += ["", "### Saturated: rate-limit adherence", ""]
        rows = [
            [
                name,
                _fmt(f["configured_rate"], 0),
                _fmt(f["accepted_rate"]),
                _fmt(f["rate_error"], 4),
                f"{f['window_max']:g} (max {f['allowed_window_max']:g})",
                _fmt(f["http_429"], 0),
                _fmt(f["cpu"]),
            ]
            for name, f in results["saturated"]["contenders"].items()
        ]
        out += _table(
            [
                "contender",
                "configured req/s",
                "achieved req/s",
                "achieved/configured",
                "worst 1 s window",
                "429s",
                "CPU s",
            ],
            rows,
        )
    if "overhead" in results:
        block = results["overhead"]
        out += ["", f"### Overhead: instant server, {block['concurrency']} concurrent", ""]
        rows = [
            [
                name,
                _fmt(f["cpu_per_request_ms"], 3),
                _fmt(f["requests_per_second"], 0),
            ]
            for name, f in block["contenders"].items()
        ]
        out += _table(["client", "CPU ms/request", "requests/s"], rows)
        out += ["", "| ratio | measured | target |", "|---|---|---|"]
        for name, value in block["ratios"].items():
            target = block["targets"].get(name)
            out.append(f"| {name} | {_fmt(value)} | {'<= ' + _fmt(target, 1) if target else ''} |")
    if "memory" in results:
        m = results["memory"]
        out += ["", f"### Memory: {m['tasks']:,} tracked tasks", ""]
        out += _table(
            ["figure", "measured", "target"],
            [
                ["RSS bytes per tracked task", _fmt(m["bytes_per_task"], 0), "<= 1024"],
                ["time to track() them all, s", _fmt(m["track_seconds"]), "~1"],
                ["time to leave `async with Poller`, s", _fmt(m["shutdown_seconds"], 4), "< 1"],
                [
                    "all deadlines due at once: last TIMED_OUT after, s",
                    _fmt(m["deadline_seconds_after_due"]),
                    "a couple",
                ],
                [
                    "(one coroutine per task: bytes per task)",
                    _fmt(m["coroutine_per_task_bytes"], 0),
                    "",
                ],
            ],
        )
    if "hybrid" in results:
        out += _hybrid(results["hybrid"])
    if "fleet" in results:
        from .fleet import table

        out += ["", "### Fleet: four replicas on one key", "", table(results["fleet"])]
    return "\n".join(out) + "\n"


def _hybrid(block: dict[str, Any]) -> list[str]:
    rows = [
        [
            name,
            _fmt(f["requests_per_task"]),
            _fmt(f["polls_per_task"]),
            _fmt(f["webhooks_per_task"]),
            _fmt(f["webhooks_dropped"], 0),
            _fmt(f["latency_p50"], 3),
            _fmt(f["latency_p95"], 3),
            _fmt(f["latency_max"], 1),
        ]
        for name, f in block["variants"].items()
    ]
    header = [
        "variant",
        "requests/task",
        "polls/task",
        "webhooks/task",
        "webhooks dropped",
        "latency p50 (sim s)",
        "p95",
        "max",
    ]
    title = f"### Hybrid (webhooks + safety-net polling) vs polling only: {block['tasks']} tasks"
    return ["", title, "", *_table(header, rows), "", str(block.get("note", ""))]


def plots(results: dict[str, Any], directory: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written: list[Path] = []
    if "workload" in results:
        sizes = results["workload"]["sizes"]
        fig, axes = plt.subplots(1, len(sizes), figsize=(5 * len(sizes), 4), squeeze=False)
        for ax, (size, block) in zip(axes[0], sizes.items(), strict=True):
            for name, runs in block["runs"].items():
                points = [
                    (r["requests_per_task"], r["latency_p50"])
                    for r in runs
                    if r["requests_per_task"] is not None and r["latency_p50"] is not None
                ]
                if points:
                    xs, ys = zip(*points, strict=True)
                    ax.scatter(xs, ys, label=name)
            ax.set_title(f"{size} tasks")
            ax.set_xlabel("requests per completed task")
            ax.set_ylabel("detection latency p50 (simulated s)")
            ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize="small")
        fig.tight_layout()
        path = directory / "latency_vs_requests.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    if "memory" in results:
        m = results["memory"]
        fig, ax = plt.subplots(figsize=(5, 3.5))
        labels = ["Poller (tracked task)", "coroutine per task"]
        values = [m["bytes_per_task"], m["coroutine_per_task_bytes"]]
        ax.bar(labels, values, color=["tab:blue", "tab:gray"])
        ax.axhline(1024, color="tab:red", linestyle="--", label="target 1 KiB")
        ax.set_ylabel("RSS bytes per task")
        ax.legend()
        fig.tight_layout()
        path = directory / "memory_per_task.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written
