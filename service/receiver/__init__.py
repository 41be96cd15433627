"""The HTTP side: hooks that take submissions in, health endpoints and the admin API."""
