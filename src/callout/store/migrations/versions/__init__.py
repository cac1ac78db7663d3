"""Schema versions, oldest first: 0001 is the initial schema."""
