"""Talking to the Close CRM: the API client, its rate limiter and search, and a local emulator.

``service.close.emulator`` is a fake Close API (an aiohttp application) used by the tests,
by ``make run`` when no Close API key is configured, and by benchmarks and chaos tests.
"""
