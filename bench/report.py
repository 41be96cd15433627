"""bench/RESULTS.md and bench/results.png from the figures of a run (results.json)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import followups
from bench.targets import NOTES, targets


def _f(value: Any, digits: int = 0, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:,.{digits}f}{unit}"


def _machine_lines(data: dict[str, Any]) -> list[str]:
    m = data["machine"]
    return [
        f"- CPU: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; Linux {m['kernel']}",
        f"- Python {m['python']}, aiohttp {m['aiohttp']}, redis-py {m['redis_py']}; "
        f"redis-server {m['redis_server']}; wrk {m['wrk']}",
    ]


def _background(section: dict[str, Any]) -> str:
    share = section.get("background_cpu_share", 0.0)
    warn = " **other processes were busy: figures are lower than the box can do**"
    return (
        f"_{_f(section.get('elapsed_seconds'), 0)} s; other processes on the box used "
        f"{100 * share:.1f}% of its CPU meanwhile{warn if share > 0.05 else ''}._"
    )


def _table(*columns: str) -> list[str]:
    """The head of a markdown table (after a blank line): the column names, then the rule."""
    return ["", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]


def _counts(counts: dict[str, Any]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in counts.items())


def _intake(i: dict[str, Any]) -> list[str]:
    loop = i.get("event_loop", "asyncio")
    out = [
        f"wrk (1 thread, {i['connections']} connections) and Redis on core 1, the "
        f"server on core 0. The receiver runs on {loop} (its "
        "default, INTAKE_EVENT_LOOP=auto); the baselines run on the same loop (the "
        "ratios the targets use) and, for reference, on asyncio's own loop. "
        f"{i['warmup']:g} s warm-up, then {i['seconds']:g} s measured "
        f"(at most {i['seconds'] * i.get('file_rate', 7500):,.0f} distinct requests: "
        "every request is a new delivery of a new person, so none is a duplicate). "
        + (
            f"The naive handler on the receiver's loop and the two receivers take turns: "
            f"{i['rounds']} rounds of {i['seconds'] / i['rounds']:g} s each, after a "
            "warm-up each, so that a box whose speed drifts slows all three alike; the "
            "targets' ratios are the medians of the rounds' ratios, and the table's rows "
            "for those three are all their rounds together (p50: the median round's, p99 "
            "and max: the worst round's). "
            if "rounds" in i
            else ""
        )
        + f"JSON body {i.get('json_body_bytes')} bytes, signed (Standard Webhooks); the "
        f"form post {i.get('form_body_bytes')} bytes, form-encoded."
    ]
    out += _table("server", "requests/s", "p50 ms", "p99 ms", "max ms",
                  "server CPU per request", "server CPU use", "Redis CPU per request",
                  "core 1 (wrk, Redis) busy", "answers")  # fmt: skip
    servers = [
        ("ceiling", f"bare aiohttp, answers 202 (ceiling), {loop}"),
        ("xadd", f"bare aiohttp + one XADD per request (naive), {loop}"),
        ("ceiling_asyncio", "bare aiohttp, answers 202 (ceiling), asyncio's loop"),
        ("xadd_asyncio", "bare aiohttp + one XADD per request (naive), asyncio's loop"),
        ("receiver_json", f"**receiver**, signed JSON webhook, {loop}"),
        ("receiver_form", f"**receiver**, form post, {loop}"),
    ]
    for key, label in servers:
        if key not in i:
            continue
        r = i[key]
        answers = _counts(r["statuses"])
        if r.get("socket_errors"):
            answers += f"; socket errors {r['socket_errors']}"
        out.append(
            f"| {label} | {_f(r['rps'])} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
            f"{r['max_ms']:.1f} | {_f(r.get('cpu_us_per_request'), 0, ' us')} | "
            f"{_f(100 * r.get('cpu_share', float('nan')), 0, '%')} of a core | "
            f"{_f(r.get('redis_cpu_us_per_request'), 0, ' us')} | "
            f"{_f(100 * r.get('load_core_busy', float('nan')), 0, '%')} | {answers} |"
        )
    ratios = i["ratios"]
    return [
        *out,
        "",
        f"Ratios (same event loop{', medians of the rounds' if 'rounds' in i else ''}): "
        "receiver / naive XADD = "
        f"**{ratios['receiver_vs_xadd']:.2f}**, receiver / ceiling = "
        f"{ratios['receiver_vs_ceiling']:.2f}, naive / ceiling = "
        f"{ratios['xadd_vs_ceiling']:.2f}, form / naive = **{ratios['form_vs_xadd']:.2f}**"
        + (
            f"; CPU per request, form / signed JSON = **{ratios['form_cpu_vs_json_cpu']:.2f}**"
            if "form_cpu_vs_json_cpu" in ratios
            else ""
        )
        + (
            f"; receiver / naive XADD on asyncio's own loop = "
            f"{ratios['receiver_vs_xadd_asyncio']:.2f}."
            if "receiver_vs_xadd_asyncio" in ratios
            else "."
        ),
        *(
            [
                "Each round's requests/s over the naive handler's: signed JSON "
                + ", ".join(f"{r:.2f}" for r in i["round_ratios"]["receiver_vs_xadd"])
                + "; form posts "
                + ", ".join(f"{r:.2f}" for r in i["round_ratios"]["form_vs_xadd"])
                + "."
            ]
            if "round_ratios" in i
            else []
        ),
        f"Every 202 was stored: {i['accepted']:,} answered 202 (warm-ups included), "
        f"{i['stored_in_stream']:,} entries in the stream (a few more: requests in "
        "flight when wrk stopped were stored but not counted).",
    ]


def _drain(d: dict[str, Any]) -> list[str]:
    out = [
        "One `lead-intake worker` process on core 0, Redis and the emulator on core 1. "
        "N distinct people preloaded with `Queue.enqueue`, hidden from the "
        "consumer group until the worker waits on the stream, then released at once; "
        "leads/s = created / (last final state - release). CPU = the worker process's "
        "user+system time over the drain / N. Bound = concurrency / (Close calls per "
        "lead x latency) (Little's law). `INTAKE_CLOSE_RATE_LIMIT=100000` so our own "
        "limiter is not what is measured. Close's latency is uniform within +-10% of "
        "the nominal one (its mean, which the bound uses): with a constant latency and "
        "every entry released at once, all tasks move in lockstep and queue for the "
        "CPU at the same instants, which real traffic does not do. Where Close has a "
        "latency, N is a whole number of rounds of the concurrency."
    ]
    out += _table("Close latency", "concurrency", "N", "leads/s", "bound", "ratio",
                  "CPU ms/lead", "worker CPU use", "Close calls/lead", "states")  # fmt: skip
    for r in d["rows"]:
        use = r["leads_per_s"] * r["cpu_ms_per_lead"] / 1000
        out.append(
            f"| {r['latency_ms']} ms | {r['concurrency']} | {r['n']} | "
            f"{r['leads_per_s']:.1f} | {_f(r.get('bound'), 1)} | "
            f"{_f(r.get('ratio'), 2)} | {r['cpu_ms_per_lead']:.2f} | "
            f"{100 * use:.0f}% | {r['close_calls_per_lead']:.1f} | {_counts(r['states'])} |"
        )
    return [
        *out,
        "",
        "CPU per lead includes the worker's idle polling during the run, which is "
        "why runs that take long for few leads (concurrency 1) show more.",
    ]


def _ratelimit(r: dict[str, Any]) -> list[str]:
    out = [
        f"Emulator limited to {r['limit']} requests per {r['window']:g} s per endpoint "
        f"group (as Close limits per group); {r['processes']} worker processes of 16 "
        f"tasks on core 0; N = {r['n']} leads per run; Close latency 0; the default follow-up "
        "(a note). Each configuration drains N new people, then the same N people again "
        "(new submissions; the lead cache knows their leads). Calls per lead are counted "
        "from the emulator's log; the bound is min over groups of limit / calls per lead; "
        "leads/s for the ratio is counted after the first window (every bucket starts full, "
        "so the first second carries a burst), the whole run's beside it."
    ]
    out += _table("our limiter", "people", "calls/lead: search / lead_write / activity_write",
                  "bound leads/s", "leads/s after 1st window", "ratio", "leads/s whole run",
                  "429s in all", "429s after the first window")  # fmt: skip
    for label, text in (
        ("ours_at_limit", f"INTAKE_CLOSE_RATE_LIMIT={r['limit']}"),
        ("ours_off", "off (100000)"),
    ):
        for people in ("new", "returning"):
            run = r.get(label, {}).get(people)
            if not run:
                continue
            calls = " / ".join(f"{run['calls_per_lead'].get(g, 0):.2f}" for g in
                               ("search", "lead_write", "activity_write"))  # fmt: skip
            groups = run["groups"].values()
            out.append(
                f"| {text} | {people} | {calls} | {run['bound']:.1f} "
                f"({run['binding_group']}) | {run['steady_leads_per_s']:.1f} | "
                f"{run['ratio']:.2f} | {run['leads_per_s']:.1f} | "
                f"{sum(g.get('status_429_total', 0) for g in groups)} | "
                f"{sum(g.get('status_429_after_first_window', 0) for g in groups)} |"
            )
    out += ["", "Accepted requests per second after the first window, by endpoint group:"]
    out += _table("our limiter", "people", "group", "achieved req/s", "of the limit")
    for label, text in (("ours_at_limit", "at the limit"), ("ours_off", "off")):
        for people in ("new", "returning"):
            run = r.get(label, {}).get(people)
            for group, g in (run or {}).get("groups", {}).items():
                if g.get("requests"):
                    out.append(
                        f"| {text} | {people} | {group} | {g['accepted_rate']:.1f} | "
                        f"{g['accepted_rate'] / r['limit']:.2f} |"
                    )
    return [
        *out,
        "",
        "Our limiter is set to the limit in the first configuration because that is how a "
        "deployment is meant to be configured (INTAKE_CLOSE_RATE_LIMIT is the "
        "organisation's limit per endpoint group, shared by all workers through "
        "Redis); its default (10/s) would simply halve the rate here. The second shows "
        "what happens when it is left above Close's limit: only Close's 429s "
        "and RateLimit headers hold the workers back.",
    ]


def _orgsize(o: dict[str, Any]) -> list[str]:
    pre = o.get("preload", {})
    out = [
        f"The same drain against two emulators: N = {o['n']} new people, one worker of 16 "
        "tasks on core 0, Close latency 0 (the worker is CPU-bound, so any time the emulator "
        "adds per search shows), Redis and the emulators on core 1. One emulator is empty "
        f"(reset before each drain), the other holds {o['preloaded_leads']:,} leads of other "
        f"people (stored in {pre.get('seconds', float('nan')):.0f} s through the emulator's "
        f"own lead creation); the drains alternate, {o.get('rounds', 1)} against each, and "
        "the median run of each is shown (all runs' leads/s in the last column). Emulator "
        "CPU per lead is its process's CPU time over the drain / N."
    ]
    out += _table("emulator", "leads/s", "worker CPU ms/lead", "emulator CPU ms/lead",
                  "Close calls/lead", "states", "leads/s of every run")  # fmt: skip
    for label in ("empty", "preloaded"):
        run = o[label]
        held = f"{o['preloaded_leads']:,} leads" if label == "preloaded" else "empty"
        out.append(
            f"| {held} | {run['leads_per_s']:.1f} | {run['cpu_ms_per_lead']:.2f} | "
            f"{_f(run.get('emulator_cpu_ms_per_lead'), 2)} | "
            f"{run['close_calls_per_lead']:.1f} | {_counts(run['states'])} | "
            + ", ".join(f"{v:.0f}" for v in run.get("all_leads_per_s", [run["leads_per_s"]]))
            + " |"
        )
    cpu = o.get("emulator_cpu_ratio")
    return [
        *out,
        "",
        f"Preloaded / empty: leads/s **{o['ratio']:.2f}**"
        + (f", emulator CPU per lead {cpu:.2f}." if cpu is not None else "."),
    ]


def _e2e(e: dict[str, Any]) -> list[str]:
    out = [
        f"A paced poster (open loop) sends {e['rate']:g} signed webhooks/s for "
        f"{e['seconds']:g} s to one receiver; one worker (16 tasks) delivers them. "
        "Receiver and worker on core 0, Redis, emulator and poster on core 1. "
        "Receipt -> created is the record's `updated_at - received_at`."
    ]
    out += _table("Close latency", "posted", "receipt->created p50", "p90", "p99", "max",
                  "HTTP answer p50 / p99", "states")  # fmt: skip
    for run in e["runs"]:
        out.append(
            f"| {run['latency_ms']:g} ms | {run['posted']} | {run['p50_ms']:.0f} ms | "
            f"{run['p90_ms']:.0f} ms | {run['p99_ms']:.0f} ms | {run['max_ms']:.0f} ms "
            f"| {run['http_p50_ms']:.1f} / {run['http_p99_ms']:.1f} ms | "
            f"{_counts(run['states'])} |"
        )
    return out


def _memory(m: dict[str, Any]) -> list[str]:
    out = [
        f"wrk posts N = {m['n']:,} signed webhooks (distinct people) to one receiver "
        "while one worker (64 tasks) delivers them to the emulator (latency 0); RSS "
        f"sampled every second; the run is bounded at {m['timeout']:g} s. Nothing "
        f"pinned. Accepted: {m['accepted']:,} in {m['intake_seconds']:.0f} s; "
        f"processed by the worker: {m['processed']:,} in {m['total_seconds']:.0f} s"
        + (
            "."
            if m["drained"]
            else " (the time bound came first: the worker saw fewer submissions than "
            "the receiver; run `python -m bench.run --only memory --memory-timeout 900` "
            "for all of them)."
        )
    ]
    out += _table("process", "start", "after warm-up (10%)", "peak", "end",
                  "growth after warm-up")  # fmt: skip
    for name in ("receiver", "worker"):
        v = m.get(name)
        if v:
            out.append(
                f"| {name} | {v['start_mib']:.0f} MiB | {v['after_warmup_mib']:.0f} MiB "
                f"| {v['peak_mib']:.0f} MiB | {v['end_mib']:.0f} MiB | "
                f"{v['growth_after_warmup_mib']:+.1f} MiB |"
            )
    return out


def _scaleout(so: dict[str, Any]) -> list[str]:
    si, sd = so["intake"], so["drain"]
    out = [
        "Nothing pinned: the processes, Redis, the emulator and wrk share both cores. "
        f"Intake: {si['connections']} connections in all (with 2 receivers, one wrk "
        f"each with half), signed JSON, {si['seconds']:g} s. Drain: N = {sd['n']} "
        "per run, 16 tasks per worker process, Close latency 0 (so CPU is the limit)."
    ]
    out += _table("processes", "intake requests/s", "intake p99", "drain leads/s",
                  "drain CPU ms/lead")  # fmt: skip
    drains = {str(r["processes"]): r for r in sd["rows"]}
    for p in ("1", "2", "4"):
        rx = si.get(p)
        dr = drains.get(p)
        rx_rate = _f(rx["rps"]) if rx else "-"
        rx_p99 = _f(rx["p99_ms"], 1, " ms") if rx else "-"
        dr_rate = _f(dr["leads_per_s"], 1) if dr else "-"
        dr_cpu = _f(dr["cpu_ms_per_lead"], 2) if dr else "-"
        out.append(f"| {p} | {rx_rate} | {rx_p99} | {dr_rate} | {dr_cpu} |")
    return out


_SECTIONS: tuple[tuple[str, str, Callable[[dict[str, Any]], list[str]]], ...] = (
    ("intake", "1. Receiver intake", _intake),
    ("drain", "2. Worker throughput", _drain),
    ("orgsize", "2b. An organisation of many leads", _orgsize),
    ("ratelimit", "3. Close's rate limit", _ratelimit),
    ("e2e", "4. End-to-end latency", _e2e),
    ("followup", "7. Follow-ups: speed to lead, Close calls per lead", followups.report_lines),
    ("memory", "5. Memory", _memory),
    ("scaleout", "6. Scale-out on this 2-core box", _scaleout),
)
"""Each section of RESULTS.md: its key in results.json, its title, what it says when it ran."""


def markdown(data: dict[str, Any]) -> str:
    s = data.get("sections", {})
    out: list[str] = ["# Benchmark results", ""]
    out.append(
        "Generated by `make bench` (`python -m bench.run`) from the figures in `results.json`; "
        "the plot is `results.png`. How to run each benchmark and how to read the figures for "
        "sizing a deployment: [README.md](README.md)."
    )
    out.append("")
    if data.get("quick"):
        out += ["**QUICK RUN (`--quick`): tiny runs that check the harness; figures are "
                "meaningless.**", ""]  # fmt: skip
    out += ["## Machine", "", *_machine_lines(data)]
    out.append(f"- Written {data.get('written_at')}; all sections took "
               f"{_f(data.get('total_seconds'))} s.")  # fmt: skip
    out += [
        "- Set-up: everything on 127.0.0.1. A private `redis-server` configured like production "
        "(AOF on, `appendfsync everysec`, `noeviction`; no snapshots or AOF rewrites during "
        "runs). Service processes run as in production: `lead-intake serve` / `lead-intake "
        "worker`, `INTAKE_ENV=production` (JSON logs), `INTAKE_LOG_LEVEL=WARNING`, a sources "
        "file written by the bench with a webhook source (`partner`: Standard Webhooks "
        "signatures, secret from the environment) and a form source (`website`: generic-form "
        "preset, honeypot, CORS, redirect, per-client and per-source rate limits set high "
        "because all load comes from one address). Close is the service's emulator "
        "(`bench/emulator.py`: the same app, its search indexed by email, phone and lead "
        "id, plus a route that preloads leads).",
        "",
    ]
    rows = targets(data)
    if rows:
        out += ["## Targets", *_table("target", "measured", "met")]
        for name, measured, met, _ in rows:
            out.append(f"| {name} | {measured} | {'yes' if met else '**no**'} |")
        missed = [(name, key) for name, _, met, key in rows if met is False]
        if missed:
            out += ["", "Targets not met, why, and what would fix it:", ""]
            seen = set()
            for name, key in missed:
                if key in seen:
                    continue
                seen.add(key)
                out.append(f"- **{name}**: {NOTES.get(key, key)}")
        out.append("")

    for key, title, body in _SECTIONS:
        section = s.get(key)
        if not section:
            continue
        out += [f"## {title}", "", f"Command: `{data['commands'].get(key)}`", ""]
        if "error" in section:
            out += [f"Failed: `{section['error']}`", ""]
        else:
            out += [*body(section), "", _background(section), ""]
    out += [
        "## Left simpler than a sizing exercise would need",
        "",
        "- One machine: load generator, Redis and the emulator share the box with the process "
        "under test, so absolute figures are lower than on separate machines; the ratios and "
        "the per-request / per-lead CPU costs carry over best.",
        "- wrk is closed-loop (each connection waits for its answer): latency under an open "
        "arrival rate above capacity would be worse than shown.",
        "- The emulator's latency is uniform within +-10% (section 2) or constant (sections 4-6); "
        "real Close latency varies more and has a tail.",
        "- Redis runs on the same box without replication; a managed Redis adds a network "
        "round trip to every receive and to each of the worker's ~6 Redis round trips per "
        "lead.",
        "- Returning persons are measured only under Close's rate limit (section 3); the "
        "throughput runs (section 2) are all new persons.",
        "- The box is a VM shared with other work: the ceiling alone moved between about 8,000 "
        "and 22,000 requests/s from run to run, idle box or not. Compare ratios and CPU per "
        "request or per lead between runs, not absolute rates; sections during which other "
        "processes were busy are flagged above.",
        "",
    ]
    return "\n".join(out)


def plot(data: dict[str, Any], path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    s = data.get("sections", {})
    fig, axes = plt.subplots(2, 3, figsize=(17, 9.5))
    fig.suptitle(
        f"Lead Intake benchmarks - {data['machine']['cpu']}, {data['machine']['cores']} cores"
        + (" (QUICK RUN: figures meaningless)" if data.get("quick") else ""),
        fontsize=12,
    )
    ax = axes[0][0]
    i = s.get("intake", {})
    if "receiver_json" in i:
        loop = i.get("event_loop", "asyncio")
        keys = ["ceiling", "xadd", "xadd_asyncio", "receiver_json", "receiver_form"]
        names = {
            "ceiling": f"bare 202\n(ceiling)\n{loop}",
            "xadd": f"naive\nXADD\n{loop}",
            "xadd_asyncio": "naive\nXADD\nasyncio",
            "receiver_json": f"receiver\nsigned JSON\n{loop}",
            "receiver_form": f"receiver\nform\n{loop}",
        }
        colours = {"ceiling": "#999", "xadd": "#bbb", "xadd_asyncio": "#ddd"}
        keys = [k for k in keys if k in i]
        labels = [names[k] for k in keys]
        values = [i[k]["rps"] for k in keys]
        bars = ax.bar(labels, values, color=[colours.get(k, "#2a7") for k in keys])
        for bar, k in zip(bars, keys, strict=True):
            ax.annotate(
                f"{i[k]['rps']:,.0f}/s\np99 {i[k]['p99_ms']:.1f} ms",
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=8,
            )
        ax.axhline(0.9 * i["xadd"]["rps"], color="r", ls="--", lw=1, label="0.9x naive (JSON)")
        ax.axhline(0.8 * i["xadd"]["rps"], color="m", ls=":", lw=1, label="0.8x naive (forms)")
        ax.set_ylim(0, max(values) * 1.25)
        ax.legend(fontsize=8)
    ax.set_title("1. Intake, one process on one core (requests/s)")

    ax = axes[0][1]
    d = s.get("drain", {})
    colors = {0: "#444", 50: "#27c", 200: "#c52"}
    for latency in (0, 50, 200):
        rows = [r for r in d.get("rows", []) if r["latency_ms"] == latency]
        if not rows:
            continue
        xs = [r["concurrency"] for r in rows]
        ax.plot(xs, [r["leads_per_s"] for r in rows], "o-", color=colors[latency],
                label=f"Close latency {latency} ms")  # fmt: skip
        if latency:
            ax.plot(xs, [r["bound"] for r in rows], ":", color=colors[latency],
                    label=f"Little's-law bound, {latency} ms")  # fmt: skip
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("worker concurrency (tasks)")
    ax.set_ylabel("leads/s")
    ax.set_title("2. Worker throughput, one process on one core")
    ax.legend(fontsize=7)

    ax = axes[0][2]
    for latency in (0, 50, 200):
        rows = [r for r in d.get("rows", []) if r["latency_ms"] == latency]
        if rows:
            ax.plot([r["concurrency"] for r in rows], [r["cpu_ms_per_lead"] for r in rows], "o-",
                    color=colors[latency], label=f"Close latency {latency} ms")  # fmt: skip
    ax.axhline(2, color="r", ls="--", lw=1, label="target 2 ms")
    ax.set_xscale("log", base=2)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("worker concurrency (tasks)")
    ax.set_ylabel("worker CPU ms per lead")
    ax.set_title("2. Worker CPU per lead")
    ax.legend(fontsize=7)

    ax = axes[1][0]
    r = s.get("ratelimit", {})
    for label, style in (("ours_at_limit", "-"), ("ours_off", "--")):
        run = r.get(label, {}).get("new")
        if run:
            ours = "= limit" if label == "ours_at_limit" else "off"
            for group in ("search", "activity_write"):
                per = run["groups"][group].get("per_second", [])
                ax.plot(range(len(per)), per, style, marker=".", label=f"{group}, ours {ours}")
    if r.get("limit"):
        ax.axhline(r["limit"], color="r", lw=1, label=f"Close limit {r['limit']}/s")
    ax.set_xlabel("second of the run")
    ax.set_ylabel("accepted requests in that second")
    ax.set_title("3. Close rate limit, new persons (3 worker processes)")
    ax.legend(fontsize=7)

    ax = axes[1][1]
    m = s.get("memory", {})
    samples = m.get("samples", [])
    if samples:
        mib = 1024 * 1024
        for name, progress, color in (("receiver", "accepted", "#2a7"), ("worker", "processed",
                                                                        "#27c")):  # fmt: skip
            pts = [(x[progress], x[name] / mib) for x in samples if x.get(name)]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], color=color,
                    label=f"{name} RSS vs submissions {progress}")  # fmt: skip
        ax.set_xlabel("submissions")
        ax.set_ylabel("RSS MiB")
        peak = max((x[n] for x in samples for n in ("receiver", "worker") if x.get(n)), default=1)
        ax.set_ylim(0, 1.4 * peak / mib)
        ax.legend(fontsize=7)
    ax.set_title(f"5. Memory over {m.get('n', 0):,} submissions")

    ax = axes[1][2]
    so = s.get("scaleout", {})
    if "intake" in so and "drain" in so:
        si, sd = so["intake"], so["drain"]
        xs = [p for p in ("1", "2") if p in si]
        ax.bar([f"{p} receiver(s)" for p in xs], [si[p]["rps"] for p in xs], color="#2a7",
               label="intake requests/s")  # fmt: skip
        ax2 = ax.twinx()
        rows = sd["rows"]
        ax2.bar(
            [f"{row['processes']} worker(s)" for row in rows],
            [row["leads_per_s"] for row in rows],
            color="#27c",
            label="drain leads/s",
        )
        ax.set_ylabel("intake requests/s", color="#2a7")
        ax2.set_ylabel("drain leads/s (Close latency 0)", color="#27c")
        ax.tick_params(axis="x", labelrotation=20)
    ax.set_title("6. Scale-out on the 2-core box (unpinned)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write(data: dict[str, Any], out: Path) -> None:
    (out / "RESULTS.md").write_text(markdown(data))
    plot(data, out / "results.png")
