"""``lead-intake dev`` and ``make run``: receiver and worker in one process with local stand-ins
(a private ``redis-server``, the Close emulator)."""
