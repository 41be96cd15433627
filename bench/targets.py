"""The targets the benchmarks are held to: which are met by the figures of results.json, and,
for those that are not, why (``NOTES``, written from the profiles and the figures)."""

from __future__ import annotations

from typing import Any

from bench import followups

Row = tuple[str, str, bool | None, str]
"""(target, measured, met?, why: a key of ``NOTES`` or the note itself)."""

NOTES = {
    "intake_bound": (
        "In this run the load's core (wrk and Redis, with whatever else the box ran) was "
        "busy {load} of the time while the servers used {share} of theirs: the requests/s "
        "of every row, the naive handler's included, are then what core 1 let through, not "
        "what the server can do, and their ratios measure the load core. The per-core "
        "figures (the naive handler's CPU per request over the receiver's: the requests/s "
        "each would make with its core to itself) are the dependable comparison: signed "
        "JSON {json_core:.2f}x, form posts {form_core:.2f}x."
    ),
    "intake_load_core": (
        "Core 1 spends per request about {wrk:.0f} us on wrk (the ceiling run, which has no "
        "Redis: core 1 busy / its requests/s) plus Redis's CPU per request: {naive_redis:.0f} "
        "us for the naive handler's bare XADD, {json_redis:.0f} us for the door's script on a "
        "signed webhook and {form_redis:.0f} us on a form post (the record hash with the "
        "envelope, the delivery's idempotency key, the state index and the stream entry, and "
        "for forms two rate-limit buckets: what the door's guarantees store, and the naive "
        "handler does not). Where core 1 bounds the run, the receiver's requests/s can reach "
        "at most (wrk + naive Redis) / (wrk + receiver Redis) of the naive handler's, however "
        "little CPU the receiver itself spends: {json_bound:.2f}x for signed JSON, "
        "{form_bound:.2f}x for forms, below the targets. The naive handler also skips work "
        "every real receiver does at HTTP level: no access log, no middleware, no metrics."
    ),
    "intake_cpu_bound": (
        "In this run the servers used {share} of their core (naive, signed JSON, form) while "
        "core 1 (wrk and Redis) was {load} busy: each server was bound by its own CPU, so the "
        "requests/s ratios are the CPU-per-request ratios (the per-core figures), and the gap "
        "is the receiver's own work per request: the naive handler {naive:.0f} us, so 0.9x "
        "needs at most {json_need:.0f} us for signed JSON (measured {json_cpu:.0f}) and 0.8x "
        "at most {form_need:.0f} us for a form post (measured {form_cpu:.0f})."
    ),
    "intake_waiting": (
        "In this run the servers used {share} of their core (naive, signed JSON, form) and "
        "core 1 (wrk and Redis) was {load} busy: the receivers did not use their whole core. "
        "Their CPU per request is within the per-core targets (signed JSON {json_cpu:.0f} us "
        "against at most {json_need:.0f}, form posts {form_cpu:.0f} against {form_need:.0f}), "
        "but each request waits for its script in Redis ({json_redis:.0f} and "
        "{form_redis:.0f} us of Redis CPU per request, against the bare XADD's "
        "{naive_redis:.0f}), and with 32 connections the time they spend waiting leaves the "
        "core idle: requests/s is bound by the round trip, not by the receiver's CPU. More "
        "connections would use the rest."
    ),
    "intake_json": (
        "Per request the receiver spends more CPU than the naive handler (CPU per request in "
        "section 1): besides aiohttp's own HTTP handling (the ceiling's cost) it bounds the "
        "body's size and time, checks the HMAC of the 1 KB body, parses it, builds the "
        "envelope, the record and its history, and waits for one group-committed script. "
        "Its profile (`make bench BENCH_ARGS=--profile`, bench/profiles/receiver_json.txt) "
        "names where the time goes. The dependable way to more requests/s is more receiver "
        "processes, each on its own core."
    ),
    "intake_form": (
        "A form post costs more than a signed webhook besides the HTTP handling: the "
        "form-encoded parse, the mapping check at the door (a post that can never become a "
        "lead is refused at once), the body-hash delivery key, and the two rate-limit "
        "buckets (taken in the same script as the store, so no extra round trip). See "
        "bench/profiles/receiver_form.txt for the split."
    ),
    "intake_p99": (
        "At 32 connections a request waits behind the others (mean = 32 / requests per "
        "second), and the tail adds pauses of a few milliseconds: whichever core is saturated "
        "(the receiver's, or the load's with wrk and Redis; see the CPU columns of section "
        "1) sets both. Lowering the CPU per request, the receiver's and Redis's, lowers both."
    ),
    "worker_ratio": (
        "A new person's lead costs three Close calls, five Redis scripts (claim; take the "
        "locks with the lead cache and create marks; 'creating'; 'created' with the cache; "
        "the outcome with the ack and the lock release) and a shared token refill now and "
        "then. At concurrency 1 the scripts and the CPU add a few percent to 3 x latency; at 16 "
        "and 64 tasks the tasks also queue for the one CPU, so the gap grows with the "
        "worker's CPU use (section 2). Fix: less CPU per lead, or fewer tasks per process and "
        "more processes."
    ),
    "worker_cpu": (
        "The worker profile (bench/profiles/worker.txt) puts redis-py's command path (five "
        "scripts per lead), aiohttp's client (three Close calls), and mapping with the note "
        "at the top of the busy samples."
    ),
    "orgsize": (
        "The emulator answers a person's search from its indexes (email, phone, lead id): a "
        "slower drain against the preloaded organisation means something scans every lead."
    ),
    "ratelimit": (
        "With our limiter set to Close's limit the workers keep to it; with it off, Close's "
        "429s and `RateLimit: remaining=0` pauses alone overshoot and then stall. Set "
        "INTAKE_CLOSE_RATE_LIMIT (per endpoint group, all workers together) to the "
        "organisation's Close limit."
    ),
    "speed_to_lead": (
        "The task waits for the person's search, the create and the task itself (the owner is "
        "chosen in Redis and goes into the create body); beyond those calls the time is the "
        "worker's queueing for its CPU and the stream read. More worker processes, or fewer "
        "tasks per process, shorten the queue."
    ),
    "followup_bound": (
        "Close's limit per endpoint group bounds the leads per second whatever the workers do; "
        "above the bound the workers were held back only by Close's 429s. Set "
        "INTAKE_CLOSE_RATE_LIMIT to the organisation's limit."
    ),
    "memory": (
        "RSS kept growing after the warm-up: look at what the process keeps per submission "
        "(metrics label sets, caches; the emulator's objects are in another process)."
    ),
}


def _why(key: str, more: str = "") -> str:
    """The note of ``key``, with what this run's figures add."""
    return f"{NOTES[key]} {more}".strip()


def _load_core_note(i: dict[str, Any]) -> str:
    """What core 1 (wrk and Redis) lets the receiver reach against the naive handler."""
    needed = ("ceiling", "xadd", "receiver_json", "receiver_form")
    if not all(k in i and "load_core_busy" in i[k] for k in needed) or not i["ceiling"]["rps"]:
        return ""
    wrk = 1e6 * i["ceiling"]["load_core_busy"] / i["ceiling"]["rps"]
    naive = i["xadd"]["redis_cpu_us_per_request"]
    json_redis = i["receiver_json"]["redis_cpu_us_per_request"]
    form_redis = i["receiver_form"]["redis_cpu_us_per_request"]
    return NOTES["intake_load_core"].format(
        wrk=wrk,
        naive_redis=naive,
        json_redis=json_redis,
        form_redis=form_redis,
        json_bound=(wrk + naive) / (wrk + json_redis),
        form_bound=(wrk + naive) / (wrk + form_redis),
    )


def _intake(i: dict[str, Any]) -> list[Row]:
    if "receiver_json" not in i or "receiver_form" not in i:
        return []
    ratios, loop = i["ratios"], i.get("event_loop", "asyncio")
    json_cpu = i["receiver_json"]["cpu_us_per_request"]
    form_cpu = i["receiver_form"]["cpu_us_per_request"]
    cpu_ratio = ratios.get("form_cpu_vs_json_cpu", form_cpu / json_cpu)
    p99 = i["receiver_json"]["p99_ms"]
    runs = [i[k] for k in ("xadd", "receiver_json", "receiver_form") if k in i]
    load = [r["load_core_busy"] for r in runs if "load_core_busy" in r]
    bound = ""
    if load and min(load) > 0.95 and "receiver_vs_xadd_per_core" in ratios:
        bound = NOTES["intake_bound"].format(
            load=f"{100 * min(load):.0f}%+",
            share=", ".join(f"{100 * r['cpu_share']:.0f}%" for r in runs),
            json_core=ratios["receiver_vs_xadd_per_core"],
            form_core=ratios["form_vs_xadd_per_core"],
        )
    if bound:  # core 1 bounded the run: what it allows, from its figures
        bound = f"{bound} {_load_core_note(i)}".strip()
    elif max(i[k]["cpu_share"] for k in ("receiver_json", "receiver_form")) < 0.95:
        bound = NOTES["intake_waiting"].format(  # no core saturated: the round trip bounds it
            share=", ".join(f"{100 * r['cpu_share']:.0f}%" for r in runs),
            load=", ".join(f"{100 * r['load_core_busy']:.0f}%" for r in runs),
            json_need=i["xadd"]["cpu_us_per_request"] / 0.9,
            form_need=i["xadd"]["cpu_us_per_request"] / 0.8,
            json_cpu=json_cpu,
            form_cpu=form_cpu,
            naive_redis=i["xadd"]["redis_cpu_us_per_request"],
            json_redis=i["receiver_json"]["redis_cpu_us_per_request"],
            form_redis=i["receiver_form"]["redis_cpu_us_per_request"],
        )
    else:  # the servers' cores bounded it: the ratio is the CPU per request's
        bound = NOTES["intake_cpu_bound"].format(
            share=", ".join(f"{100 * r['cpu_share']:.0f}%" for r in runs),
            load=", ".join(f"{100 * r['load_core_busy']:.0f}%" for r in runs),
            naive=i["xadd"]["cpu_us_per_request"],
            json_need=i["xadd"]["cpu_us_per_request"] / 0.9,
            form_need=i["xadd"]["cpu_us_per_request"] / 0.8,
            json_cpu=json_cpu,
            form_cpu=form_cpu,
        )
    per_core = (
        f"; per core {ratios['receiver_vs_xadd_per_core']:.2f}x"
        if "receiver_vs_xadd_per_core" in ratios
        else ""
    )
    form_per_core = (
        f"; per core {ratios['form_vs_xadd_per_core']:.2f}x"
        if "form_vs_xadd_per_core" in ratios
        else ""
    )
    return [
        (
            "Signed JSON >= 0.9x the naive XADD handler (requests/s, same loop)",
            f"{ratios['receiver_vs_xadd']:.2f}x ({i['receiver_json']['rps']:,.0f} vs "
            f"{i['xadd']['rps']:,.0f} req/s, {loop}){per_core}",
            ratios["receiver_vs_xadd"] >= 0.9,
            _why("intake_json", bound),
        ),
        (
            "Form posts >= 0.8x the naive XADD handler (requests/s, same loop)",
            f"{ratios['form_vs_xadd']:.2f}x ({i['receiver_form']['rps']:,.0f} req/s)"
            f"{form_per_core}",
            ratios["form_vs_xadd"] >= 0.8,
            _why("intake_form", bound),
        ),
        (
            "Form posts <= 1.3x the signed-JSON path's CPU per request",
            f"{cpu_ratio:.2f}x ({form_cpu:.0f} vs {json_cpu:.0f} us)",
            cpu_ratio <= 1.3,
            "intake_form",
        ),
        ("Receiver p99 < 25 ms at 32 connections", f"{p99:.1f} ms", p99 < 25, "intake_p99"),
    ]


def _drain(d: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    dominated = [
        r
        for r in d.get("rows", [])
        if r["latency_ms"] > 0 and r["leads_per_s"] * r["cpu_ms_per_lead"] / 1000 < 0.5
    ]
    if dominated:
        worst = min(dominated, key=lambda r: r["ratio"])
        rows.append(
            (
                ">= 0.9x the Little's-law bound where Close latency dominates "
                "(runs using < 50% of the worker's core)",
                f"lowest {worst['ratio']:.2f}x (latency {worst['latency_ms']} ms, "
                f"concurrency {worst['concurrency']}); "
                + ", ".join(
                    f"{r['latency_ms']}ms/{r['concurrency']}: {r['ratio']:.2f}" for r in dominated
                ),
                worst["ratio"] >= 0.9,
                "worker_ratio",
            )
        )
    busy = [r for r in d.get("rows", []) if r["latency_ms"] == 0 and r["concurrency"] >= 16]
    if busy:
        cpu = min(r["cpu_ms_per_lead"] for r in busy)
        rows.append(
            (
                "<= 2 ms CPU per lead (worker process, Close answering at once)",
                f"{cpu:.2f} ms",
                cpu <= 2,
                "worker_cpu",
            )
        )
    return rows


def _orgsize(o: dict[str, Any]) -> list[Row]:
    if "ratio" not in o:
        return []
    return [
        (
            f"Drain against {o['preloaded_leads']:,} preloaded leads within 10% of the drain "
            "against an empty emulator",
            f"{o['ratio']:.2f}x ({o['preloaded']['leads_per_s']:.0f} vs "
            f"{o['empty']['leads_per_s']:.0f} leads/s)",
            o["ratio"] >= 0.9,
            "orgsize",
        )
    ]


def _ratelimit(r: dict[str, Any]) -> list[Row]:
    at = r.get("ours_at_limit")
    if not at or "new" not in at:
        return []
    new, back = at["new"], at["returning"]
    late = sum(
        g.get("status_429_after_first_window", 0)
        for run in (new, back)
        for g in run["groups"].values()
    )
    searches = [
        r[label][people]["calls_per_lead"].get("search", 0)
        for label in ("ours_at_limit", "ours_off")
        if label in r
        for people in ("returning",)
    ]
    return [
        (
            "New persons: leads/s >= 0.95x the bound (min over groups of limit / calls per "
            "lead), every group limited, our limiter at the limit, note only",
            f"{new['ratio']:.2f}x ({new['steady_leads_per_s']:.1f} leads/s after the first "
            f"window; bound {new['bound']:.1f}, set by {new['binding_group']})",
            new["ratio"] >= 0.95,
            "ratelimit",
        ),
        (
            "Returning persons make no search call",
            f"{max(searches):.2f} searches per lead (returning runs)",
            max(searches) == 0,
            "ratelimit",
        ),
        (
            "No 429 after the first window (our limiter at the limit)",
            f"{late} (new and returning persons)",
            late == 0,
            "ratelimit",
        ),
    ]


def _memory(mem: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for name in ("receiver", "worker"):
        m = mem.get(name)
        if m:
            growth = m["growth_after_warmup_mib"]
            flat = growth <= max(10.0, 0.1 * m["after_warmup_mib"])
            rows.append(
                (
                    f"{name.capitalize()} RSS flat after warm-up",
                    f"{growth:+.1f} MiB after warm-up (peak {m['peak_mib']:.0f} MiB)",
                    flat,
                    "memory",
                )
            )
    return rows


def targets(data: dict[str, Any]) -> list[Row]:
    """Every target whose section is in the results."""
    s = data.get("sections", {})
    rows: list[Row] = []
    for key, check in (
        ("intake", _intake),
        ("drain", _drain),
        ("orgsize", _orgsize),
        ("ratelimit", _ratelimit),
        ("followup", followups.target_rows),
        ("memory", _memory),
    ):
        section = s.get(key) or {}
        if "error" not in section:
            rows += check(section)
    return rows
