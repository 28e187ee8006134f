"""The application layer: what the product does, one home for each use case.

The CLI, the daemon, RuleTests, `simulate` (and later the web handlers) call these, and nothing below them, to:

- enroll one record, many, or automatically; stop or retry an enrollment by hand: `enrolling.py`;
- record an event on a record (unsubscribe, complaint, open, click, convert, delete, stage change, task, task
  done, appointment): `events.py`;
- record mail that comes back (reply, auto-reply, bounce, delay warning) read over IMAP: `inbox.py`;
- validate a rule directory, apply a rule set, swap the rule set in force with its scheduler, reload: `rules.py`;
- run the scheduler's tick (due steps, task steps, dispatch to the transport): `scheduler.py`;
- run stage-duration reminders: `reminding.py`;
- build the transport Settings name and the signed links mail carries: `sending.py`;
- tell an operator what needs them (`outreach doctor`): `doctor.py`;
- read records from CSV and JSONL files (`outreach records import`): `importing.py`;
- read a page of the records that match, and how many match in all (`outreach records list`): `records.py`;
- pick the outbox messages an operator sends again, and send them again (`outreach outbox requeue`): `outbox.py`.

Each takes the store through a narrow Protocol of what it uses and takes `now`: the engine (outreach/engine/)
decides, the store (outreach/store/) writes that decision, and nothing here holds SQL, a screen or a socket.
docs/architecture.md walks through it.
"""
