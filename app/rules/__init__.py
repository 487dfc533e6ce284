"""Triage rules: ordered conditions and actions per mailbox."""
