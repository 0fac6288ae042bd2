"""The run's figures against the issue's targets: JSON, a markdown table, a PNG chart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ALG_LABEL = {"ed25519": "Baton ed25519", "hmac": "Baton hmac-sha256", "bare": "bare stack"}
RSS_LIMIT_MB = 200


def _batch(point: dict[str, Any]) -> str:
    per = point.get("updates_per_transaction")
    return f"; {per:g} updates per transaction" if per else ""


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        text = f"{value:,.1f}" if abs(value) >= 10 else f"{value:,.2f}"
    else:
        text = f"{value:,}" if isinstance(value, int) else str(value)
    return f"{text} {unit}".strip()


def _met(ok: bool | None) -> str:
    return {True: "met", False: "**missed**", None: "(no target)"}[ok]


def figures(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Flatten the run into table rows: what, value, target, met, ratio to the bare stack."""
    rows: list[dict[str, Any]] = []
    updates = results.get("updates", {})
    bare = {p["concurrency"]: p for p in updates.get("bare", [])}
    for c, point in sorted(bare.items()):
        rows.append({"figure": f"bare stack, {c} clients", "value": f"{_fmt(point['rps'], 'req/s')}, p50 "
                     f"{_fmt(point['p50_ms'], 'ms')}, p99 {_fmt(point['p99_ms'], 'ms')}{_cpu(point)}", "target": "baseline",
                     "met": None, "ratio": None, "errors": _errors(point), "others": _others(point)})
    for alg in ("ed25519", "hmac"):
        for point in updates.get(alg, []):
            c = point["concurrency"]
            base = bare.get(c)
            ratio = round(point["rps"] / base["rps"], 2) if base and base["rps"] else None
            rows.append({
                "figure": f"signed updates {alg}, {c} clients: throughput",
                "value": _fmt(point["rps"], "req/s") + _cpu(point) + _batch(point),
                "target": "≥ 60 % of bare stack" if c >= 64 else "",
                "met": None if ratio is None or c < 64 else ratio >= 0.60, "ratio": ratio, "errors": _errors(point),
                "others": _others(point),
            })
            p99_ratio = round(point["p99_ms"] / base["p99_ms"], 2) if base and base.get("p99_ms") and point.get("p99_ms") else None
            rows.append({
                "figure": f"signed updates {alg}, {c} clients: p50 / p99",
                "value": f"{_fmt(point['p50_ms'], 'ms')} / {_fmt(point['p99_ms'], 'ms')}",
                "target": "p99 < 100 ms" if c == 64 else "",
                "met": (point["p99_ms"] is not None and point["p99_ms"] < 100 and not _errors(point)) if c == 64 else None,
                "ratio": p99_ratio, "errors": "",
            })
    for point in results.get("drivers", []):
        rows.append({"figure": f"driver {point['driver']}: {point.get('stack', 'Baton ed25519')}, "
                               f"{point['concurrency']} clients",
                     "value": f"{_fmt(point['rps'], 'req/s')}, p99 {_fmt(point['p99_ms'], 'ms')}",
                     "target": "", "met": None,
                     "ratio": point.get("ratio_to_bare"), "errors": _errors(point), "others": _others(point)})
    status = results.get("status_page")
    if status:
        for point in status["points"]:
            headline = point["concurrency"] == status["headline_concurrency"]
            rows.append({
                "figure": f"status page /s/{{token}}, {status['cases']:,} cases, {point['concurrency']} clients",
                "value": f"p99 {_fmt(point['p99_ms'], 'ms')} (p50 {_fmt(point['p50_ms'], 'ms')}, {_fmt(point['rps'], 'req/s')})",
                "target": "p99 < 20 ms" if headline else "",
                "met": (point["p99_ms"] is not None and point["p99_ms"] < 20 and not _errors(point)) if headline else None,
                "ratio": None, "errors": _errors(point), "others": _others(point),
            })
    sweep = results.get("sweep")
    if sweep and sweep.get("small") and sweep.get("large"):
        small, large = sweep["small"], sweep["large"]
        for part in (small, large):
            rows.append({"figure": f"watchdog sweep, {part['due']:,} due among {part['parties_total']:,} parties",
                         "value": _fmt(part["median_s"] * 1000, "ms"), "target": "", "met": None, "ratio": None,
                         "errors": "", "others": _others(part)})
        ratio = sweep.get("ratio")
        rows.append({"figure": f"watchdog sweep ratio ({large['parties_total']:,} / {small['parties_total']:,} parties)",
                     "value": _fmt(ratio, "×"), "target": "≤ 2×", "met": None if ratio is None else ratio <= 2,
                     "ratio": None, "errors": ""})
    dispatch = results.get("dispatcher")
    if dispatch:
        rows.append({"figure": f"dispatcher, {dispatch['queued']:,} SMS to the Twilio double",
                     "value": _fmt(dispatch["per_second"], "/s"), "target": "≥ 500 /s",
                     "met": dispatch["per_second"] is not None and dispatch["per_second"] >= 500, "ratio": None,
                     "errors": ("" if dispatch["with_twilio_sid"] == dispatch["queued"] else
                                f"{dispatch['queued'] - dispatch['with_twilio_sid']} not sent: "
                                + "; ".join(f"{n}× {e}" for e, n in dispatch.get("errors", {}).items())),
                     "others": _others(dispatch)})
    console = results.get("console")
    if console:
        for name, point in console["pages"].items():
            rows.append({
                "figure": f"{console['label']} {name} ({point['path_example']}), {console['open_cases']:,} open cases",
                "value": f"p99 {_fmt(point['p99_ms'], 'ms')} (p50 {_fmt(point['p50_ms'], 'ms')})",
                "target": "< 200 ms (p99)",
                "met": point["p99_ms"] is not None and point["p99_ms"] < 200 and not _errors(point),
                "ratio": None, "errors": _errors(point), "others": _others(point),
            })
    for run in (results.get("scans") or {}).get("runs", []):
        rows.append({"figure": f"10,000 bag scans in one CSV request ({run['label']}, {run['body_kib']} KiB)",
                     "value": _fmt(run["seconds"], "s"), "target": "seconds", "met": None, "ratio": None,
                     "errors": "" if run.get("accepted") is not None else f"status {run.get('status')}"})
    uploads = results.get("uploads")
    if uploads:
        for run in uploads["runs"]:
            size = uploads["files_mib"][run["kind"]]
            rows.append({"figure": f"attachment upload, {size} MiB {run['kind'].upper()}, {run['parallel']} at a time",
                         "value": f"worker RSS +{_fmt(run['rss_growth_mb'], 'MB')} (median {run['seconds_median']} s)",
                         "target": "a few MiB (PDF); one decode (image)", "met": None, "ratio": None,
                         "errors": "" if run["ok"] == run["uploads"] else f"{run['uploads'] - run['ok']} refused"})
    for role, info in sorted(results.get("rss", {}).items()):
        baton = info.get("baton", False)
        rows.append({"figure": f"peak RSS: {role}", "value": _fmt(info["vmhwm_mb"], "MB"),
                     "target": f"< {RSS_LIMIT_MB} MB" if baton else "", "met": info["vmhwm_mb"] < RSS_LIMIT_MB if baton else None,
                     "ratio": None, "errors": ""})
    return rows


def _cpu(point: dict[str, Any]) -> str:
    cpu = point.get("cpu") or {}
    if "server_ms_per_request" not in cpu:
        return ""
    return (f" (CPU per request: app {cpu['server_ms_per_request']:.1f} ms, "
            f"PostgreSQL {cpu.get('postgres_ms_per_request', 0):.1f} ms)")


def _others(point: dict[str, Any]) -> str:
    """CPU cores that processes other than the benchmark's used while this figure was measured."""
    cpu = point.get("cpu") or {}
    return f"{cpu['other_cores']:.2f}" if "other_cores" in cpu else ""


def _errors(point: dict[str, Any]) -> str:
    bad = {s: n for s, n in point.get("statuses", {}).items() if not s.startswith("2")}
    parts = [f"{n}× HTTP {s}" for s, n in bad.items()]
    parts += [f"{n}× {e}" for e, n in point.get("errors", {}).items()]
    if point.get("signed_on_the_fly"):
        parts.append(f"{point['signed_on_the_fly']} signed on the fly")
    return ", ".join(parts)


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    lines = [
        f"# Baton benchmark, {meta['started_at']}" + (" (quick run)" if meta["quick"] else ""),
        "",
        f"{meta['machine']}. PostgreSQL {meta.get('postgres_version', '?')}, Baton `serve --workers 2` "
        f"+ 1 `baton worker`, load from a separate process on 127.0.0.1 ({meta['warmup_s']:g} s warm-up, "
        f"{meta['duration_s']:g} s measured per point). Other load on the machine during the run: "
        f"load average {meta['loadavg_start'][0]:.1f} at start, {meta.get('loadavg_end', [0])[0]:.1f} at end; "
        f"other processes used {meta.get('other_cores_during_updates', 'n/a')} cores on average during the "
        f"signed-update runs. \"Others' CPU\" is what processes outside this benchmark used while a figure was "
        f"measured: on an idle machine it is ~0; figures taken next to a busy neighbour are lower and noisier.",
        "",
        "| figure | value | target | met? | Baton / bare stack | others' CPU (cores) | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in figures(results):
        ratio = _fmt(row["ratio"], "×") if row["ratio"] is not None else ""
        target = row["target"]
        met = _met(row["met"]) if target and target != "baseline" else ""
        lines.append(f"| {row['figure']} | {row['value']} | {target} | {met} | {ratio} | {row.get('others', '')} "
                     f"| {row['errors']} |")
    notes = results.get("notes", [])
    if notes:
        lines += ["", *[f"- {note}" for note in notes]]
    return "\n".join(lines) + "\n"


def chart(results: dict[str, Any], path: Path) -> str | None:
    """Throughput and p99 against concurrency; returns an error text when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        return f"no chart: {exc} (pip install matplotlib)"
    updates = results.get("updates", {})
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    styles = {"bare": ("black", "s", "--"), "ed25519": ("tab:blue", "o", "-"), "hmac": ("tab:orange", "^", "-")}
    for key in ("bare", "ed25519", "hmac"):
        points = sorted(updates.get(key, []), key=lambda p: p["concurrency"])
        if not points:
            continue
        color, marker, line = styles[key]
        xs = [p["concurrency"] for p in points]
        left.plot(xs, [p["rps"] for p in points], color=color, marker=marker, linestyle=line, label=ALG_LABEL[key])
        right.plot(xs, [p["p99_ms"] or 0 for p in points], color=color, marker=marker, linestyle=line,
                   label=ALG_LABEL[key])
    for axis in (left, right):
        axis.set_xscale("log", base=2)
        axis.set_xticks([16, 64, 256], labels=["16", "64", "256"])
        axis.set_xlabel("concurrent clients")
        axis.grid(True, alpha=0.3)
        axis.legend()
    left.set_ylabel("signed updates / s")
    left.set_ylim(bottom=0)
    left.set_title("Throughput")
    right.set_ylabel("p99 latency (ms)")
    right.set_yscale("log")
    right.axhline(100, color="tab:red", linewidth=0.8, linestyle=":")
    right.set_title("p99 latency (target < 100 ms at 64)")
    meta = results["meta"]
    fig.suptitle(f"Baton vs bare stack, {meta['started_at']}" + (" (quick)" if meta["quick"] else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def write(results: dict[str, Any], out_dir: Path, *, latest: bool = True) -> tuple[Path, str]:
    """The run's JSON, and (for a whole run) latest.json, latest.md and the chart latest.png."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = results["meta"]["started_at"].replace(":", "").replace("-", "")
    text = json.dumps(results, indent=2, default=str)
    if not latest:
        path = out_dir / f"partial-{stamp}.json"
        path.write_text(text)
        return path, markdown(results)
    (out_dir / f"{stamp}.json").write_text(text)
    (out_dir / "latest.json").write_text(text)
    table = markdown(results)
    problem = chart(results, out_dir / "latest.png")
    if problem:
        table += f"\n{problem}\n"
    else:
        table += "\n![throughput and p99 against concurrency](latest.png)\n"
    (out_dir / "latest.md").write_text(table)
    return out_dir / f"{stamp}.json", table
