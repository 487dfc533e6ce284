"""The outbox: mail we owe a customer, written with the ticket and sent exactly once."""
