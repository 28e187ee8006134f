"""The data store: SQLAlchemy Core tables, Alembic migrations and one Store with domain verbs."""

from outreach.store import rows
from outreach.store.store import DEFAULT_URL, NotFound, Store, StoreBusy, StoreError, resolve_url

__all__ = ["DEFAULT_URL", "NotFound", "Store", "StoreBusy", "StoreError", "resolve_url", "rows"]
