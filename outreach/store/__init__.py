"""The data store: SQLAlchemy Core tables, Alembic migrations and one Store with domain verbs.

The only package that imports SQLAlchemy or a database driver. `DatabaseError` is SQLAlchemy's base exception by
another name, so that a caller can tell the database failing from its own bugs without importing SQLAlchemy.
"""

from sqlalchemy.exc import SQLAlchemyError as DatabaseError

from outreach.store import rows
from outreach.store.sequencing import AlreadyLive
from outreach.store.store import DEFAULT_URL, NotFound, Store, StoreBusy, StoreError, resolve_url

__all__ = [
    "DEFAULT_URL", "AlreadyLive", "DatabaseError", "NotFound", "Store", "StoreBusy", "StoreError", "resolve_url", "rows",
]
