"""Ports of the local stack: a port already taken is one clear line, not a traceback."""

from __future__ import annotations

import errno
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from service.errors import IntakeError


@dataclass(frozen=True, slots=True)
class Port:
    """A port the stack listens on, and the setting that changes it."""

    host: str
    port: int
    what: str
    setting: str


class PortInUse(IntakeError):
    """One or more ports are taken by another process."""

    def __init__(self, taken: Sequence[Port]) -> None:
        self.taken = tuple(taken)
        parts = [
            f"port {p.port} ({p.what}) is in use, set {p.setting} to another" for p in self.taken
        ]
        super().__init__("; ".join(parts) + " (0: any free port)")


def in_use(port: Port) -> bool:
    """Whether binding ``port`` fails because something else has it (as aiohttp binds)."""
    if port.port == 0:
        return False
    family = socket.AF_INET6 if ":" in port.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((port.host, port.port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def check_free(ports: Sequence[Port]) -> None:
    """Raise PortInUse naming every taken port of ``ports``."""
    taken = [port for port in ports if in_use(port)]
    if taken:
        raise PortInUse(taken)
