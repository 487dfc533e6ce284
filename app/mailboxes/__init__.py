"""Support mailboxes (support@, billing@ …) connected to Gmail."""
