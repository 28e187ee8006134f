"""Alembic environment: runs on the connection that outreach.store.migrate hands over."""

from __future__ import annotations

from alembic import context

from outreach.store import tables

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `outreach db upgrade` (outreach.store.migrate), not the alembic CLI")

context.configure(
    connection=connection,
    target_metadata=tables.metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
