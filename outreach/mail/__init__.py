"""Outgoing and incoming mail: message building, transports, IMAP polling and inbound classification."""
