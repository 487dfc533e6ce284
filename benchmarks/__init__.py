"""Performance benchmarks for Inboxdesk, run with ``make bench`` (``python -m benchmarks``).

The ticket list is what every agent opens all day (DESIGN: the queue must answer in 30 ms at the
95th percentile with 100,000 tickets). A test suite on a handful of rows cannot show whether the
indexes and queries hold up at that size, so this package seeds a realistically shaped database,
serves the real app under uvicorn and measures the list endpoint over HTTP, the way the add-on
calls it. It exits non-zero when the main query misses its budget, so CI can gate on it.

Modules: ``seed`` fills the database, ``server`` runs the app in a child process,
``ticket_list`` measures the queries, ``explain`` shows the plans of the SQL the endpoint emits.
"""
