"""Tickets: numbering, the status machine, assignment, tags, notes and the event log."""
