"""The only code that talks to the Gmail API (the sync issue): client, sync, outbox, emulator."""
