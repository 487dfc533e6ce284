"""Customer satisfaction ratings (CSAT) of resolved tickets."""
