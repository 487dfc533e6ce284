"""Gmail labels: the taxonomy and the two-way mapping with ticket state (the sync issue)."""
