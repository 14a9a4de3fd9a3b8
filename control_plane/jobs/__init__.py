"""Periodic work of the elected leader: probes, alert evaluation and alert delivery.

These compose the pure monitoring core (`control_plane.monitor`) with storage, metrics and HTTP;
`control_plane.jobs.scheduler` runs them with APScheduler on the one process that holds the lead.
"""
