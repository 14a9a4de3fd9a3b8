"""Chaos engineering: the DC/integration simulator, fault injection, drills under load."""
