"""Talking to the Close CRM: the API client, the shared rate limiter and pauses, and search.

The local stand-in for Close (tests, ``make run``, benchmarks) is the sibling package
``close_emulator``, which imports nothing from here.
"""
