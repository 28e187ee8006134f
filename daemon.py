#!/usr/bin/env python3
"""Start the outreach daemon from a checkout: `python daemon.py [--rules DIR]`."""

import sys

from outreach import daemon

if __name__ == "__main__":
    sys.exit(daemon.main())
