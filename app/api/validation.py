"""Constraints shared by the request models and query parameters of every router."""

from __future__ import annotations

# PostgreSQL text cannot hold U+0000: the driver refuses it and the request would fail with a 500
# (SQLite stores it). Free-text inputs carry this pattern, so both backends answer 422 alike.
NO_NUL = r"^[^\x00]*$"
