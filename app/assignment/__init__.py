"""Automatic assignment: who is available now (availability), and which member of a team gets a
ticket (service). Teams, shifts, time off and the away switch are managed through routes.py."""
