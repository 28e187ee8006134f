"""`python -m outreach.cli` runs the `outreach` command."""

from outreach.cli import main

main()
