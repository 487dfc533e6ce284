"""Messages: every Gmail message that belongs to a ticket."""
