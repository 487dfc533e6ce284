"""Service levels: business calendars and SLA policies."""
