"""Every Redis key name and TTL Lead Intake uses, in one place.

All keys share one hash tag, ``{<prefix>}``, so every key a Lua script touches sits in one
Redis Cluster slot. Every key except the work stream itself has a TTL (or, for the dead-letter
stream, is trimmed by age).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

GROUP = "workers"
"""The consumer group every worker reads the work stream through."""

MARKER_TTL_SECONDS = 30 * 24 * 3600
"""The data marker's life; every readiness probe and worker read that checks it refreshes it."""
DATA_LOST_TTL_SECONDS = 7 * 24 * 3600
"""How long a recorded loss of the data is shown (readiness, dashboard, admin API)."""


def identity_key(kind: Literal["email", "phone"], normalised: str) -> str:
    """A person in key names: ``e:`` or ``p:`` and 32 hex characters of a SHA-256 of the
    normalised (lower-case) email or E.164 phone, never the email or phone itself."""
    digest = hashlib.sha256(f"{kind}:{normalised}".encode()).hexdigest()[:32]
    return f"{kind[0]}:{digest}"


def identity_keys(email: str | None, phone: str | None) -> list[str]:
    """A person's identity keys, sorted: of the normalised email and E.164 phone they have."""
    keys = [identity_key("email", email)] if email else []
    if phone:
        keys.append(identity_key("phone", phone))
    return sorted(keys)


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names under one prefix, e.g. ``Keys("intake").stream == "{intake}:stream"``."""

    prefix: str

    @property
    def tag(self) -> str:
        return "{" + self.prefix + "}"

    @property
    def stream(self) -> str:
        """The work stream: one entry per submission waiting for (or in) processing."""
        return f"{self.tag}:stream"

    @property
    def retry(self) -> str:
        """Sorted set of ``<submission id>`` scored by the unix time the next attempt is due."""
        return f"{self.tag}:retry"

    @property
    def dead(self) -> str:
        """Dead-letter stream: one entry per submission that ended ``dead``; trimmed by age."""
        return f"{self.tag}:dead"

    @property
    def marker(self) -> str:
        """Hash (``id``, ``created_at``): the marker of this prefix's data, made with the
        consumer group; gone together with the group means Redis lost the data."""
        return f"{self.tag}:marker"

    @property
    def data_lost(self) -> str:
        """JSON (``at``, ``marker``): when Redis was last found without its data."""
        return f"{self.tag}:data_lost"

    def state(self, state: str) -> str:
        """Sorted set of the ids of submissions currently in ``state``, scored by receipt time
        (the index behind listing and counting; members whose record expired are pruned)."""
        return f"{self.tag}:state:{state}"

    def sub(self, submission_id: str) -> str:
        """Hash holding one submission's record, payload and history."""
        return f"{self.tag}:sub:{submission_id}"

    def idem(self, source: str, key: str) -> str:
        return f"{self.tag}:idem:{source}:{key}"

    def lock(self, identity: str) -> str:
        return f"{self.tag}:lock:{identity}"

    def lead(self, identity: str) -> str:
        return f"{self.tag}:lead:{identity}"

    def person(self, identity: str) -> str:
        """Sorted set of the ids of a person's submissions (the dashboard's search), scored by
        receipt time; written by the worker's transitions, kept as long as the records."""
        return f"{self.tag}:person:{identity}"

    def lead_submissions(self, lead_id: str) -> str:
        """Sorted set of the ids of the submissions that found or made ``lead_id``, scored by
        receipt time; written by the worker's transitions, kept as long as the records."""
        return f"{self.tag}:leadsubs:{lead_id}"

    def merged(self, lead_id: str) -> str:
        """The lead ``lead_id`` was merged into (the merge map a retry or replay follows)."""
        return f"{self.tag}:merged:{lead_id}"

    @property
    def links(self) -> str:
        """Sorted set of identity links (``<lead>|<lead>``), scored by when first seen."""
        return f"{self.tag}:links"

    def links_in(self, status: str) -> str:
        """Sorted set of the identity links in ``status`` (``flagged``, ``merged``), scored by
        when first seen: the admin listing's filter and its counts (``ZCARD``)."""
        return f"{self.tag}:links:{status}"

    def link(self, pair: str) -> str:
        """JSON of one identity link: its leads, identities, submission, policy, status."""
        return f"{self.tag}:link:{pair}"

    def creating(self, identity: str) -> str:
        """Set while a create for this person may have reached Close unseen (its answer was
        lost); expires after an hour, or the unknown-outcome grace period when longer
        (``service/worker/unknown.py``)."""
        return f"{self.tag}:creating:{identity}"

    def owner_turns(self, pool: str) -> str:
        """A round-robin pool's counter: how many leads it has handed out (shared by every
        worker); refreshed with each turn, kept ``owner_pointer_ttl_seconds``."""
        return f"{self.tag}:turns:{pool}"

    def owner_of(self, submission_id: str) -> str:
        """The owner a pool's turn gave this submission, so a retry gets the same one (and takes
        no second turn); kept as long as the record."""
        return f"{self.tag}:owner:{submission_id}"

    def close(self, name: str) -> str:
        """Close delivery state shared by all workers: ``bucket:<group>``, ``pause``, ``auth``, and
        ``fields`` (custom field id → name, for the admin plane; as long as a record)."""
        return f"{self.tag}:close:{name}"

    def admin_revoked(self, digest: str) -> str:
        """Set when the dashboard session whose cookie has this digest logged out; kept until
        that cookie would have expired anyway."""
        return f"{self.tag}:admin:revoked:{digest}"

    def throttle(self, scope: str) -> str:
        """A token bucket of the door's rate limits, e.g. ``ip:<source>:<address>``, and of
        wrong admin tokens, ``admin-login:<address>``."""
        return f"{self.tag}:throttle:{scope}"

    def provider(self, name: str) -> str:
        """Hydration state of one source shared by all workers: ``auth:<source>`` (the
        provider refuses its token: delivery paused), ``pause:<source>`` (the provider's rate
        limit), ``probe:<source>`` (who tries the token again)."""
        return f"{self.tag}:provider:{name}"
