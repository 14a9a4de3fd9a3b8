"""Monitoring core: probe hysteresis, built-in alert rules, alert state and silences.

Everything here is pure (time is passed in, no I/O, no threads): the prober, the scheduler job that
evaluates alerts, the store and the API live above and call in. Only `control_plane.domain` and
the standard library are imported, so the top layer can wire it however it likes.
"""
