"""Chaos drills: experiment files parsed into typed models, the registry of fault actions and probes,
the runner that applies them under Locust load, and the measures it reports (detect, mitigate,
recover; lost, duplicated, held) against the BIA's RTO.

The runner drives a control plane only over its public HTTP API and the simulator's admin API, as
a user's own chaos tooling would; it never reads the control plane's database.
"""
