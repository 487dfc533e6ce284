"""The Gmail add-on on the HTTP runtime: Google POSTs event objects, we answer card JSON."""
