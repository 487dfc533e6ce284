"""Database plumbing: the declarative base, column types, engines and units of work."""

from app.db.base import Base, TimestampMixin, UTCDateTime, utcnow
from app.db.session import Database, get_database

__all__ = ["Base", "Database", "TimestampMixin", "UTCDateTime", "get_database", "utcnow"]
