"""The engine: pure decisions about sequences, campaigns and reminders. It takes `now`; it does no I/O."""
