"""The order path wiring: intake, dispatch chain, retry loop and DC cancel outbox."""
