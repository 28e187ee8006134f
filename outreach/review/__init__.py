"""Rules in review: what a team runs on a rule change before it lands.

- `plan.py`: what `outreach apply` would change, and what that does to records in flight (`outreach plan`);
- `base.py`: what a rule change does against a git ref, with sample timelines (`outreach plan --base`);
- `ruletests.py`: RuleTests, run on a virtual clock through the application layer (`outreach test`);
- `simulation.py`: one enrollment, or one sales process, told as a timeline (`outreach simulate`).

`plan.py` and `base.py` are pure: the store's facts come in. `ruletests.py` and `simulation.py` run the rules
through the application layer (outreach/app/), as the CLI and the daemon do, on a store in memory.
"""
