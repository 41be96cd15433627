"""Who owns a lead: the owner part of a source's follow-ups, resolved (:func:`resolve_owner`),
the choice for one submission (:func:`choose`), and the round-robin turn (:class:`Owners`).

Rules are tried in order on the canonical record; the first that holds names a user or a pool,
and when none does, the section's own ``user`` or ``pool`` decides. A pool's turn order is its
available members (deactivated and absent users left out), each as often as their weight,
interleaved (``a:2, b:1`` gives ``a b a``). When the chosen user or pool has nobody available,
the ``default`` owner gets the lead.

Fair across every worker process: one counter per pool in Redis, and one script that advances
it and remembers the submission's owner (``{p}:owner:<submission>``), so a retry of a
submission gets the same owner and never advances the counter twice. After N leads over k
reps, each has ⌊N/k⌋ or ⌈N/k⌉ of them (as long as the pool stays the same). Pools of the same
name in several sources share one rotation.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from service.close.directory import Directory
from service.config.followup import OwnerSpec
from service.keys import Keys
from service.mapping import CloseSchema
from service.mapping.record import RecordExpr
from service.metrics import Metrics
from service.queue.connection import RedisClient
from service.queue.lua import Script
from service.worker.names import Problems, custom_key, user_id

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Rule:
    when: RecordExpr
    user: str | None
    pool: str | None


@dataclass(frozen=True, slots=True)
class Pool:
    name: str
    order: tuple[str, ...]
    """Who gets the next lead, in turn: the available users, weighted and interleaved."""
    left_out: Mapping[str, str] = field(default_factory=dict)
    """Members not in ``order``, and why (deactivated, absent)."""


@dataclass(frozen=True, slots=True)
class OwnerPlan:
    field_key: str
    """The lead key the owner goes to: ``custom.cf_...``."""
    field_name: str
    on_match: str
    rules: tuple[Rule, ...]
    user: str | None
    pool: str | None
    pools: Mapping[str, Pool]
    default: str | None
    unavailable: Mapping[str, str]
    """Users of the organisation not available now (id → deactivated / absent)."""


def interleave(weights: list[tuple[str, int]]) -> tuple[str, ...]:
    """Smooth weighted round-robin: one cycle of ``sum(weights)`` turns, each user as often as
    their weight, spread out."""
    total = sum(weight for _, weight in weights)
    current = [0] * len(weights)
    order = []
    for _ in range(total):
        for index, (_, weight) in enumerate(weights):
            current[index] += weight
        best = max(range(len(weights)), key=lambda i: (current[i], -i))
        current[best] -= total
        order.append(weights[best][0])
    return tuple(order)


def _owner_field(spec: OwnerSpec, schema: CloseSchema | None, problems: Problems) -> Any:
    custom = schema.find_field(spec.field) if schema is not None else None
    if schema is not None and custom is None:
        problems.add("owner.field", f"no lead custom field {spec.field!r} in this organisation")
        return None
    if custom is not None and custom.type != "user":
        problems.add("owner.field", f"{custom.name!r} is a {custom.type} field, not a user field")
        return None
    return custom


def _pool_members(
    name: str, spec: OwnerSpec, directory: Directory, problems: Problems
) -> list[tuple[str, int]] | None:
    pool = spec.pools[name]
    members: list[tuple[str, int]] = []
    ok = True
    if pool.group is not None:
        group = directory.group(pool.group)
        if group is None:
            problems.add(f"owner.pools.{name}.group", f"no group {pool.group!r} in Close")
            ok = False
        else:
            members = [(member, 1) for member in group.members]
    for index, member in enumerate(pool.users):
        found = user_id(member.user, f"owner.pools.{name}.users[{index}]", directory, problems)
        if found is None:
            ok = False
        else:
            members.append((found, member.weight))
    return members if ok else None


def resolve_owner(
    spec: OwnerSpec, schema: CloseSchema | None, directory: Directory, problems: Problems
) -> OwnerPlan | None:
    """The owner part resolved (None when something it names is missing)."""
    custom = _owner_field(spec, schema, problems)
    ok = custom is not None or schema is None
    unavailable = {u.id: "deactivated" for u in directory.users if not u.active}
    for index, ref in enumerate(spec.absent):
        absent = user_id(ref, f"owner.absent[{index}]", directory, problems)
        ok = ok and absent is not None
        if absent is not None:
            unavailable.setdefault(absent, "absent")
    pools: dict[str, Pool] = {}
    for name in spec.pools:
        members = _pool_members(name, spec, directory, problems)
        if members is None:
            ok = False
            continue
        available = [(user, weight) for user, weight in members if user not in unavailable]
        left = {user: unavailable[user] for user, _ in members if user in unavailable}
        pools[name] = Pool(name, interleave(available), left)
    rules = []
    for index, rule in enumerate(spec.rules):
        chosen = None
        if rule.user is not None:
            chosen = user_id(rule.user, f"owner.rules[{index}].user", directory, problems)
            ok = ok and chosen is not None
        rules.append(Rule(RecordExpr.compile(rule.when), chosen, rule.pool))
    fixed = default = None
    if spec.user is not None:
        fixed = user_id(spec.user, "owner.user", directory, problems)
        ok = ok and fixed is not None
    if spec.default is not None:
        default = user_id(spec.default, "owner.default", directory, problems)
        ok = ok and default is not None
        if default is not None and default in unavailable:
            problems.add("owner.default", f"the default owner is {unavailable[default]}")
    if not ok or custom is None:
        return None
    return OwnerPlan(
        field_key=custom_key(custom.id),
        field_name=custom.name,
        on_match=spec.on_match,
        rules=tuple(rules),
        user=fixed,
        pool=spec.pool,
        pools=pools,
        default=default,
        unavailable=unavailable,
    )


# -- one submission ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Choice:
    """What the plan says for one record: a ``user`` straight away, or a ``pool``'s turn."""

    user: str | None
    pool: str | None
    order: tuple[str, ...]
    how: str


def choose(plan: OwnerPlan, record: Mapping[str, Any]) -> Choice:
    """The first rule that holds on ``record`` (else the section's own user or pool)."""
    for index, rule in enumerate(plan.rules):
        if rule.when.holds(record):
            return _target(plan, rule.user, rule.pool, f"rules[{index}]")
    return _target(plan, plan.user, plan.pool, "no rule matched")


def _fallback(plan: OwnerPlan, why: str) -> Choice:
    default = plan.default
    if default is not None and default not in plan.unavailable:
        return Choice(default, None, (), f"{why}: the default owner")
    return Choice(None, None, (), f"{why}, and no default owner is available")


def _target(plan: OwnerPlan, user: str | None, pool: str | None, how: str) -> Choice:
    if user is not None:
        if user in plan.unavailable:
            return _fallback(plan, f"{how}: {user} is {plan.unavailable[user]}")
        return Choice(user, None, (), how)
    if pool is not None:
        order = plan.pools[pool].order
        if order:
            return Choice(None, pool, order, f"{how}: pool {pool}")
        return _fallback(plan, f"{how}: pool {pool} has nobody available")
    return _fallback(plan, how)


@dataclass(frozen=True, slots=True)
class Assignment:
    user: str | None
    how: str
    pool: str | None = None
    turn: int | None = None
    """The pool's counter after this lead (its n-th lead), when it took a turn."""


@dataclass(frozen=True, slots=True)
class TurnKeys:
    pointer: str
    memo: str


@dataclass(frozen=True, slots=True)
class TurnArgs:
    count: int
    pointer_ttl: int
    memo_ttl: int


_TURN = Script(
    TurnKeys,
    TurnArgs,
    """
-- The submission's owner if it has one already; else the pool's next turn, remembered.
local memo = redis.call('GET', K.memo)
if memo then return {memo, 0} end
local n = redis.call('INCR', K.pointer)
redis.call('EXPIRE', K.pointer, tonumber(A.pointer_ttl))
local pick = ARGV[NA + ((n - 1) % tonumber(A.count)) + 1]
redis.call('SET', K.memo, pick, 'EX', tonumber(A.memo_ttl))
return {pick, n}
""",
)


class Owners:
    """Assigns owners; the pool counters are shared by every worker through Redis."""

    def __init__(
        self,
        redis: RedisClient,
        keys: Keys,
        *,
        pointer_ttl: int,
        memo_ttl: int,
        metrics: Metrics | None = None,
    ) -> None:
        self.keys = keys
        self.pointer_ttl = pointer_ttl
        self.memo_ttl = memo_ttl
        self.metrics = metrics
        self._turn = _TURN.bind(redis)

    async def assign(
        self, plan: OwnerPlan, record: Mapping[str, Any], submission_id: str, source: str
    ) -> Assignment:
        """The owner of ``submission_id``'s lead (the same on every retry)."""
        choice = choose(plan, record)
        if choice.pool is None:
            assignment = Assignment(choice.user, choice.how)
            self._count(source, assignment)
            return assignment
        reply: Any = await self._turn(
            TurnKeys(self.keys.owner_turns(choice.pool), self.keys.owner_of(submission_id)),
            TurnArgs(len(choice.order), self.pointer_ttl, self.memo_ttl),
            more_args=choice.order,
        )
        user, turn = str(reply[0]), int(reply[1])
        if turn == 0:  # an earlier attempt of this submission took the turn
            return Assignment(user, f"{choice.how} (turn taken earlier)", choice.pool)
        assignment = Assignment(user, choice.how, choice.pool, turn)
        self._count(source, assignment)
        return assignment

    def _count(self, source: str, assignment: Assignment) -> None:
        if self.metrics is not None:
            self.metrics.assignments.labels(source, assignment.user or "none").inc()
