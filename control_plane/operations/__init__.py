"""Operator and automatic changes of a site: failover, failback, ramp, the automatic policy, incidents."""
