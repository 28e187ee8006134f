"""outreach: sales outreach rules as code."""

__version__ = "0.1.0"
