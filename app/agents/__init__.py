"""Agents (people answering tickets), their teams and their API tokens."""
