"""What the benchmark prints and writes: the tables, the goals, the plots, the machine."""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.metadata
import os
import platform
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from e2e import Leg

ROOT = Path(__file__).resolve().parents[2]
NAMES = {
    "aiohttp": "python (aiohttp)",
    "floor": "python floor (bare RSGI)",
    "floor-asgi": "python floor (bare ASGI)",
}

# (label, scenario of the fastkong leg, the reference target, goal, aim): the reference is in
# the same scenario, else in plain (see reference()).
GOALS = (
    ("plain route, 1 worker: fastkong / nginx", "plain", "nginx", 0.5, 0.8),
    ("plain route, 1 worker: fastkong / Python baseline", "plain", "aiohttp", 4.0, None),
    ("key-auth + rate-limiting (local): fastkong / nginx (plain)", "auth-rl", "nginx", 0.4, None),
)


def _find(legs: Sequence[Leg], scenario: str, target: str) -> Leg | None:
    return next(
        (g for g in legs if g.scenario.name == scenario and g.target == target and g.samples),
        None,
    )


def reference(legs: Sequence[Leg], leg: Leg, target: str) -> tuple[float, str] | None:
    """The req/s a leg is compared with: ``target`` in the same scenario, else in plain."""
    ref = _find(legs, leg.scenario.name, target)
    if ref is not None:
        return ref.rps, ""
    ref = _find(legs, "plain", target) if leg.scenario.workers == 1 else None
    return (ref.rps, " (plain)") if ref is not None else None


def _ratio(legs: Sequence[Leg], leg: Leg, target: str) -> str:
    ref = reference(legs, leg, target)
    return f"{leg.rps / ref[0]:.2f}{ref[1]}" if ref and ref[0] > 0 else "-"


def peak_table(legs: Sequence[Leg]) -> list[str]:
    lines = [
        "| scenario | target | workers | req/s | p50 ms | p99 ms | p99.9 ms | CPU s/10k req "
        "| RSS MB | vs nginx | vs python | errors | flagged runs |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for leg in legs:
        if not leg.samples:
            continue
        errors = f"**{leg.errors}**" if leg.errors else "0"
        lines.append(
            f"| {leg.scenario.name} | {NAMES.get(leg.target, leg.target)} "
            f"| {leg.scenario.workers} | {leg.rps:.0f} | {leg.median('p50_ms'):.2f} "
            f"| {leg.median('p99_ms'):.2f} | {leg.median('p999_ms'):.2f} "
            f"| {leg.cpu_per_10k:.3f} | {leg.rss_kb / 1024:.1f} "
            f"| {_ratio(legs, leg, 'nginx')} | {_ratio(legs, leg, 'aiohttp')} "
            f"| {errors} | {leg.flagged}/{len(leg.samples)} |"
        )
    return lines


def fixed_table(fixed: Sequence[Leg]) -> list[str]:
    lines = [
        "| target | rate sent /s | req/s | p50 ms | p99 ms | p99.9 ms | CPU s/10k req "
        "| errors | flagged runs |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for leg in fixed:
        if leg.samples:
            lines.append(
                f"| {NAMES.get(leg.target, leg.target)} | {leg.rate:.0f} | {leg.rps:.0f} "
                f"| {leg.median('p50_ms'):.2f} | {leg.median('p99_ms'):.2f} "
                f"| {leg.median('p999_ms'):.2f} | {leg.cpu_per_10k:.3f} "
                f"| {leg.errors or 0} | {leg.flagged}/{len(leg.samples)} |"
            )
    return lines


def goals_table(legs: Sequence[Leg]) -> list[str]:
    lines = ["| ratio | measured | goal | aim | met |", "|---|---:|---:|---:|---|"]
    for label, scenario, ref_target, goal, aim in GOALS:
        leg = _find(legs, scenario, "fastkong")
        ref = reference(legs, leg, ref_target) if leg else None
        if leg is None or ref is None or ref[0] <= 0:
            lines.append(f"| {label} | not measured | {goal} | {aim or '-'} | - |")
            continue
        value = leg.rps / ref[0]
        met = "yes" if value >= goal else "**no**"
        if aim and value >= aim:
            met = "yes (aim too)"
        lines.append(f"| {label} | {value:.2f} | {goal} | {aim or '-'} | {met} |")
    return lines


def rounds_table(legs: Sequence[Leg]) -> list[str]:
    n = max((len(leg.samples) for leg in legs), default=0)
    lines = [
        "| scenario | target | " + " | ".join(f"round {i + 1}" for i in range(n)) + " |",
        "|---|---|" + "---:|" * n,
    ]
    for leg in legs:
        cells = (f"{s.rps:.0f} ({f:.2f})" for s, f in zip(leg.samples, leg.foreign, strict=True))
        lines.append(f"| {leg.scenario.name} | {leg.target} | " + " | ".join(cells) + " |")
    return lines


def summary(legs: Sequence[Leg], fixed: Sequence[Leg], limit: float) -> list[str]:
    """What the terminal shows at the end."""
    lines = ["Peak (closed loop):", "", *peak_table(legs)]
    if fixed:
        lines += ["", "Fixed rate (half of each target's peak):", "", *fixed_table(fixed)]
    lines += ["", "Goals:", "", *goals_table(legs)]
    runs = [f for leg in (*legs, *fixed) for f in leg.foreign]
    flagged = sum(f > limit for f in runs)
    if flagged:
        lines += [
            "",
            f"{flagged} of {len(runs)} runs flagged: other processes used more than {limit} of "
            "a core during them (the machine was not quiet; rerun when it is).",
        ]
    notes = [f"- {leg.label}: {note}" for leg in (*legs, *fixed) for note in leg.notes]
    errors = [n for n in notes if "cores" not in n]
    if errors:
        lines += ["", "Errors and warnings:", *errors]
    return lines


def markdown(
    legs: Sequence[Leg],
    fixed: Sequence[Leg],
    limit: float,
    left_out: Sequence[str],
    plots: Sequence[Path],
    tools: dict[str, str | None],
    method: str,
) -> str:
    runs = [f for leg in (*legs, *fixed) for f in leg.foreign]
    flagged = sum(f > limit for f in runs)
    quiet = (
        f"**{flagged} of {len(runs)} runs are flagged**: other processes used more than {limit} "
        "of a core during them; their numbers are suspect (rerun on an idle machine)."
        if flagged
        else f"No run was flagged: other processes stayed under {limit} of a core."
    )
    out = [
        "# fastkong end-to-end benchmark: latest results",
        "",
        quiet,
        "",
        "## Goals",
        "",
        *goals_table(legs),
        "",
        "## Peak throughput (closed loop)",
        "",
        "Medians over rounds; CPU per 10k requests over all rounds of the leg's server processes; "
        "RSS is the peak during a run. `vs nginx`/`vs python`: req/s against nginx/the aiohttp "
        "proxy in the same scenario, or `(plain)` in the plain-route scenario when the scenario "
        "has no such leg.",
        "",
        *peak_table(legs),
        "",
    ]
    if fixed:
        out += [
            "## Latency at a fixed rate",
            "",
            "Each plain-route target sent half of its own peak (median of the rounds above).",
            "",
            *fixed_table(fixed),
            "",
        ]
    for plot in plots:
        out += [f"![{plot.stem}]({plot.name})", ""]
    out += [
        "## Rounds",
        "",
        "req/s by round (interleaved; the spread is the noise), and in parentheses the CPU "
        "that other processes used during that run, in cores:",
        "",
        *rounds_table([*legs, *fixed]),
        "",
    ]
    notes = [f"- {leg.label}: {note}" for leg in (*legs, *fixed) for note in leg.notes]
    if left_out or notes:
        out += ["## Notes", "", *(f"- {note}" for note in left_out), *notes, ""]
    out += ["## Machine", "", *machine_info(tools), "", "## Command", "", method, ""]
    return "\n".join(out)


# --- plots ----------------------------------------------------------------------------------------


def plots(legs: Sequence[Leg], fixed: Sequence[Leg], results: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    scenarios = list(dict.fromkeys(leg.scenario.name for leg in legs if leg.samples))
    targets = list(dict.fromkeys(leg.target for leg in legs if leg.samples))
    fig, axes = plt.subplots(2, 1, figsize=(11, 8), sharex=True)
    width = 0.8 / max(len(targets), 1)
    for i, target in enumerate(targets):
        xs, rps, cpu = [], [], []
        for j, scenario in enumerate(scenarios):
            leg = _find(legs, scenario, target)
            if leg is not None:
                xs.append(j + (i - (len(targets) - 1) / 2) * width)
                rps.append(leg.rps)
                cpu.append(leg.cpu_per_10k)
        axes[0].bar(xs, rps, width, label=NAMES.get(target, target))
        axes[1].bar(xs, cpu, width, label=NAMES.get(target, target))
    axes[0].set_ylabel("requests/s (median)")
    axes[0].set_title("Peak throughput, wrk -t1 -c50, closed loop")
    axes[0].legend(ncol=len(targets), fontsize="small")
    axes[1].set_ylabel("CPU seconds per 10k requests")
    axes[1].set_xticks(range(len(scenarios)), scenarios)
    for ax in axes:
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = results / "throughput.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(path)

    measured = [leg for leg in fixed if leg.samples]
    if measured:
        fig, ax = plt.subplots(figsize=(9, 5))
        names = [f"{NAMES.get(g.target, g.target)}\n{g.rate:.0f}/s" for g in measured]
        for k, (attr, label) in enumerate(
            (("p50_ms", "p50"), ("p99_ms", "p99"), ("p999_ms", "p99.9"))
        ):
            ax.bar(
                [i + (k - 1) * 0.27 for i in range(len(measured))],
                [g.median(attr) for g in measured],
                0.27,
                label=label,
            )
        ax.set_yscale("log")
        ax.set_ylabel("latency, ms (log scale)")
        ax.set_xticks(range(len(measured)), names)
        ax.set_title("Latency at a fixed rate: half of each target's peak, plain route")
        ax.legend()
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        path = results / "latency.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


# --- machine --------------------------------------------------------------------------------------


def _output(cmd: Sequence[str]) -> str:
    try:
        done = subprocess.run(list(cmd), capture_output=True, text=True, timeout=20, cwd=ROOT)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (done.stdout + done.stderr).strip()


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def machine_info(tools: dict[str, str | None]) -> list[str]:
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    distro = ""
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                distro = line.split("=", 1)[1].strip('"')

    def tool(name: str, args: Sequence[str], pattern: str) -> str:
        path = tools.get(name)
        m = re.search(pattern, _output([path, *args])) if path else None
        return m[1] if m else "-"

    commit = _output(["git", "rev-parse", "--short", "HEAD"]) or "unknown"
    if _output(["git", "status", "--porcelain", "--untracked-files=no"]):
        commit += " (work tree has uncommitted changes)"
    core = _output(
        [
            sys.executable,
            "-c",
            "import fastkong._core as c, fastkong._core.router as r;"
            "print('compiled' if c.is_compiled(r) else 'pure-Python twins')",
        ]
    ).splitlines()
    peers = ", ".join(
        f"{label} {tool(name, args, pattern)}"
        for label, name, args, pattern in (
            ("nginx", "nginx", ["-v"], r"nginx/(\S+)"),
            ("HAProxy", "haproxy", ["-v"], r"version (\S+)"),
            ("Caddy", "caddy", ["version"], r"v?(\d\S*)"),
            ("redis-server", "redis-server", ["--version"], r"v=(\S+)"),
            ("wrk", "wrk", ["-v"], r"^wrk (\S+)"),
        )
    )
    return [
        f"- CPU: {cpu}, {os.cpu_count()} cores",
        f"- OS: {distro or platform.system()}, kernel {platform.release()}",
        f"- Python {platform.python_version()}, Granian {_version('granian')}, "
        f"uvloop {_version('uvloop')}, aiohttp {_version('aiohttp')}",
        f"- {peers}",
        f"- fastkong: commit {commit}, core {core[-1] if core else 'unknown'}",
        f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
    ]
