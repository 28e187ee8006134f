"""outreach: sales outreach rules as code."""

__version__ = "0.2.0"
