"""HTTP plumbing every area's router shares: problem+json errors, body limits, Idempotency-Key."""
