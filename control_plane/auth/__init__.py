"""Who may do what: API tokens (stored hashed), roles, the request's principal, the audit log."""
