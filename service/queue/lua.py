"""Lua scripts whose KEYS and ARGV have names.

A script declares its keys and its arguments as two dataclasses; the script text reads them by
name, ``K.record`` and ``A.state``, and the Python caller fills them by name, so the order of
``KEYS[]``/``ARGV[]`` is a detail of this module and never a protocol two files must agree on.
A script that takes a variable number of keys or arguments after the named ones reads them from
``NK + 1`` / ``NA + 1`` on (the counts of named ones, set by the prelude).

Each script is registered once per Redis client (:meth:`Script.bind`) by the class that owns
it; the text lives beside that class.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import fields, is_dataclass
from operator import attrgetter
from typing import Any, Generic, TypeVar

from redis.commands.core import AsyncScript

from service.queue.connection import RedisClient

KeysT = TypeVar("KeysT")
ArgsT = TypeVar("ArgsT")

Value = str | bytes | int | float


def _names(spec: type[Any]) -> tuple[str, ...]:
    if not is_dataclass(spec):
        raise TypeError(f"{spec!r} is not a dataclass")
    return tuple(f.name for f in fields(spec))


def _encode(value: Any) -> Value:
    """A Python value as a script argument: True as ``"1"``, False and None as ``""``, a float
    exactly (``repr``)."""
    if value is True:
        return "1"
    if value is False or value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str | bytes | int):
        return value
    raise TypeError(f"a script argument cannot be {type(value).__name__}")


_PLAIN = frozenset({str, bytes, int})
"""Types a script argument takes as they are (``bool`` is not ``int`` here: ``type`` is exact)."""


def _getter(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    """``obj -> (obj.name, ...)`` for ``names``, always a tuple."""
    if not names:
        return lambda obj: ()
    get = attrgetter(*names)
    if len(names) == 1:
        return lambda obj: (get(obj),)
    return get


class Script(Generic[KeysT, ArgsT]):
    """A Lua script with named keys (``keys``, a dataclass of key names) and named arguments
    (``args``, a dataclass of values). ``body`` is the script after the prelude that binds the
    names; ``helpers`` are Lua functions it uses, placed before it."""

    def __init__(
        self, keys: type[KeysT], args: type[ArgsT], body: str, *, helpers: Sequence[str] = ()
    ) -> None:
        self.key_names = _names(keys)
        self.arg_names = _names(args)
        key_table = ", ".join(f"{n} = KEYS[{i}]" for i, n in enumerate(self.key_names, 1))
        arg_table = ", ".join(f"{n} = ARGV[{i}]" for i, n in enumerate(self.arg_names, 1))
        prelude = (
            f"local K = {{{key_table}}}\n"
            f"local A = {{{arg_table}}}\n"
            f"local NK, NA = {len(self.key_names)}, {len(self.arg_names)}\n"
        )
        self.text = prelude + "".join(helpers) + body
        # Tuples of the fields in one C call each (the door packs a script per request).
        self._keys_of = _getter(self.key_names)
        self._args_of = _getter(self.arg_names)

    def pack(
        self,
        keys: KeysT,
        args: ArgsT,
        more_keys: Sequence[str | bytes] = (),
        more_args: Sequence[Any] = (),
    ) -> tuple[list[Any], list[Any]]:
        """``(KEYS, ARGV)`` for one call."""
        key_list: list[Any] = list(self._keys_of(keys))
        key_list.extend(more_keys)
        return key_list, self._arguments(args, more_args)

    def command(
        self,
        sha: str,
        keys: KeysT,
        args: ArgsT,
        more_keys: Sequence[str | bytes] = (),
        more_args: Sequence[Any] = (),
    ) -> tuple[Any, ...]:
        """The whole ``EVALSHA`` command of one call, with what :meth:`pack` gives, as one tuple
        (the door packs one per request: no lists of its own to copy)."""
        named = self._keys_of(keys)
        return (
            "EVALSHA", sha, len(named) + len(more_keys), *named, *more_keys,
            *self._arguments(args, more_args),
        )  # fmt: skip

    def _arguments(self, args: ArgsT, more_args: Sequence[Any]) -> list[Any]:
        """ARGV: the named arguments, then ``more_args``, each as :func:`_encode` gives it
        (a str, bytes or int as it is, without the call)."""
        arg_list: list[Any] = [
            value if type(value) in _PLAIN else "" if value is None else _encode(value)
            for value in self._args_of(args)
        ]
        if more_args:
            arg_list.extend(_encode(value) for value in more_args)
        return arg_list

    def bind(self, redis: RedisClient) -> BoundScript[KeysT, ArgsT]:
        return BoundScript(self, redis.register_script(self.text))


class BoundScript(Generic[KeysT, ArgsT]):
    """A :class:`Script` registered with one client."""

    def __init__(self, script: Script[KeysT, ArgsT], runner: AsyncScript) -> None:
        self.script = script
        self.runner = runner

    async def __call__(
        self,
        keys: KeysT,
        args: ArgsT,
        more_keys: Sequence[str | bytes] = (),
        more_args: Sequence[Any] = (),
    ) -> Any:
        key_list, arg_list = self.script.pack(keys, args, more_keys, more_args)
        return await self.runner(keys=key_list, args=arg_list)
