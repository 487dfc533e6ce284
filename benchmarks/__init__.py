"""Performance benchmarks for Inboxdesk, run with ``make bench`` (``python -m benchmarks``).

The ticket list is what every agent opens all day (DESIGN: the queue must answer in 30 ms at the
95th percentile with 100,000 tickets). A test suite on a handful of rows cannot show whether the
indexes and queries hold up at that size, so this package seeds a realistically shaped database,
serves the real app under uvicorn and measures the list endpoint over HTTP, the way the add-on
calls it. It exits non-zero when the main query misses its budget, so CI can gate on it.

The Gmail sync is the other hot path (issue 3): every customer message passes through it, and
Gmail's per-user quota is what a mailbox can afford. ``sync_speed`` measures quota units per new
message against the floor, messages per second into SQLite and PostgreSQL, and the sync
process's memory, against the real emulator and client.

Modules: ``seed`` fills the database, ``server`` runs the app in a child process,
``ticket_list`` measures the queries, ``explain`` shows the plans of the SQL the endpoint emits;
``sync_speed`` runs the sync benchmark, with ``emulator_process`` (the emulator in a child process,
seeded from inside) and ``sync_pass`` (one measured pass in a fresh child process).
"""
