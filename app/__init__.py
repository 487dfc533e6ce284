"""Inboxdesk: configuration, database, domain services, the REST API and the CLI."""
