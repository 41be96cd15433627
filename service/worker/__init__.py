"""The worker side: a pool of asyncio tasks turning queued submissions into Close leads."""
