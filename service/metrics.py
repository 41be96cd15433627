"""Prometheus metrics, one registry per process, named by Prometheus conventions.

Counters and histograms are updated where things happen (the receiver, the pipeline, the Close
client). Queue gauges (stream length, pending, retry-scheduled, dead, delivery paused) describe
state shared by all processes, so they are read from Redis when ``/metrics`` is scraped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from service import __version__

CONTENT_TYPE = CONTENT_TYPE_LATEST
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
SPEED_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600, 86400)
E2E_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 6 * 3600, 86400)


class Metrics:
    """Every metric Lead Intake exports, registered in its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        # Labelled children of the per-request metrics, looked up once per label set:
        # ``labels()`` validates and locks on every call, and the door calls it per request.
        self._http_children: dict[tuple[str, int], tuple[Any, Any]] = {}
        self.http_requests = Counter(
            "intake_http_requests_total", "Requests to the hooks", ["source", "status"], registry=r
        )
        self.http_seconds = Histogram(
            "intake_http_request_duration_seconds",
            "Time to answer a hook request",
            ["source"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.auth_failures = Counter(
            "intake_auth_failures_total",
            "Requests refused at the door for their credentials",
            ["source", "reason"],
            registry=r,
        )
        self.submissions = Counter(
            "intake_submissions_total",
            "Submissions that reached a final state",
            ["source", "state"],
            registry=r,
        )
        self.end_to_end_seconds = Histogram(
            "intake_submission_end_to_end_seconds",
            "From receipt to the final state",
            ["source", "state"],
            buckets=E2E_BUCKETS,
            registry=r,
        )
        self.steps = Counter(
            "intake_steps_total",
            "Steps after the lead (note, contact, follow-ups) by outcome: done, skipped, failed",
            ["source", "step", "outcome"],
            registry=r,
        )
        self.links = Counter(
            "intake_identity_links_total",
            "Pairs of leads one person's email and phone led to, by what was done: merged, "
            "flagged, ignored",
            ["source", "outcome"],
            registry=r,
        )
        self.assignments = Counter(
            "intake_owner_assignments_total",
            "Leads given an owner by a source's follow-ups, by the owner's Close user id "
            "(none: nobody was available)",
            ["source", "owner"],
            registry=r,
        )
        self.speed_to_lead = Histogram(
            "intake_speed_to_lead_seconds",
            "From receipt of a submission to its task created in Close (the rep's to-do)",
            ["source"],
            buckets=SPEED_BUCKETS,
            registry=r,
        )
        self.retries = Counter(
            "intake_retries_scheduled_total",
            "Attempts put back on the retry schedule",
            ["source"],
            registry=r,
        )
        self.close_requests = Counter(
            "intake_close_requests_total",
            "Requests to Close by endpoint group and answer (status code or error)",
            ["group", "status"],
            registry=r,
        )
        self.close_seconds = Histogram(
            "intake_close_request_duration_seconds",
            "Time Close took to answer",
            ["group"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.close_remaining = Gauge(
            "intake_close_ratelimit_remaining",
            "Requests left in Close's current rate-limit window, as last reported",
            ["group"],
            registry=r,
        )
        self.provider_requests = Counter(
            "intake_provider_requests_total",
            "Hydration requests to a provider's API by answer (status code or error)",
            ["provider", "status"],
            registry=r,
        )
        self.provider_seconds = Histogram(
            "intake_provider_request_duration_seconds",
            "Time a provider's API took to answer a hydration request",
            ["provider"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.stream_length = Gauge("intake_stream_length", "Entries in the work stream", registry=r)
        self.stream_pending = Gauge(
            "intake_stream_pending", "Entries read by a worker and not finished yet", registry=r
        )
        self.retry_scheduled = Gauge(
            "intake_retry_scheduled", "Submissions waiting on the retry schedule", registry=r
        )
        self.dead = Gauge("intake_dead_letters", "Entries in the dead-letter stream", registry=r)
        self.delivery_paused = Gauge(
            "intake_delivery_paused",
            "1 while delivery is paused (reason: auth (Close's key), rate_limit:<group>, or "
            "hydration:<source> (a provider refuses the source's token))",
            ["reason"],
            registry=r,
        )
        self.oldest_entry_age = Gauge(
            "intake_stream_oldest_entry_age_seconds",
            "Age of the oldest entry in the work stream (waiting or in work); 0 when empty",
            registry=r,
        )
        self.redis_up = Gauge("intake_redis_up", "1 when the last scrape reached Redis", registry=r)
        self.redis_data_losses = Counter(
            "intake_redis_data_losses_total",
            "Times this process found Redis back without its data (stream, group, marker gone)",
            registry=r,
        )
        self.redis_data_lost_at = Gauge(
            "intake_redis_data_lost_timestamp_seconds",
            "When Redis was last found without its data (0: not within the record's life)",
            registry=r,
        )
        self.redis_volatile = Gauge(
            "intake_redis_volatile",
            "1 while Redis has no persistence (AOF off, no snapshots)",
            registry=r,
        )
        # NaN until a scrape reached Redis: unknown, so no alert compares it with 0.
        self.redis_aof = Gauge(
            "intake_redis_aof_enabled", "1 when AOF is on on every Redis node", registry=r
        )
        self.redis_noeviction = Gauge(
            "intake_redis_noeviction",
            "1 when every Redis node's maxmemory-policy is noeviction",
            registry=r,
        )
        self.redis_aof.set(math.nan)
        self.redis_noeviction.set(math.nan)
        self.worker_heartbeat = Gauge(
            "intake_worker_heartbeat_timestamp_seconds",
            "Unix time of the worker's last completed maintenance round (workers only)",
            ["consumer"],
            registry=r,
        )
        self.build_info = Gauge(
            "intake_build_info", "Always 1: the version this process runs", ["version"], registry=r
        )
        self.build_info.labels(__version__).set(1)

    def observe_http(self, source: str, status: int, seconds: float) -> None:
        """One answered hook request (``source``: a configured source's name or "unknown")."""
        children = self._http_children.get((source, status))
        if children is None:
            children = (
                self.http_requests.labels(source, str(status)),
                self.http_seconds.labels(source),
            )
            self._http_children[(source, status)] = children
        children[0].inc()
        children[1].observe(seconds)

    def set_queue(
        self,
        *,
        stream_length: int,
        pending: int,
        retry_scheduled: int,
        dead_letters: int,
        oldest_entry_age: float,
        auth_paused: bool,
        rate_limited: Mapping[str, bool],
        aof_enabled: bool,
        noeviction: bool,
    ) -> None:
        """The shared queue state, as read from Redis when ``/metrics`` is scraped."""
        self.redis_up.set(1)
        self.redis_aof.set(1 if aof_enabled else 0)
        self.redis_noeviction.set(1 if noeviction else 0)
        self.oldest_entry_age.set(oldest_entry_age)
        self.stream_length.set(stream_length)
        self.stream_pending.set(pending)
        self.retry_scheduled.set(retry_scheduled)
        self.dead.set(dead_letters)
        self.delivery_paused.labels("auth").set(1 if auth_paused else 0)
        for group, limited in rate_limited.items():
            self.delivery_paused.labels(f"rate_limit:{group}").set(1 if limited else 0)

    def set_hydration_paused(self, paused: Mapping[str, bool]) -> None:
        """Each hydrating source's pause (its provider refuses the token), read from Redis."""
        for source, is_paused in paused.items():
            self.delivery_paused.labels(f"hydration:{source}").set(1 if is_paused else 0)

    def redis_unreachable(self) -> None:
        self.redis_up.set(0)

    def render(self) -> bytes:
        return generate_latest(self.registry)
