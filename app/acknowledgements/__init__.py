"""The acknowledgement of a new ticket: composed, rate-limited and queued in the outbox."""
