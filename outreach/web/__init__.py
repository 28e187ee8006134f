"""The web side of the daemon: one aiohttp application (outreach/web/server.py)."""
