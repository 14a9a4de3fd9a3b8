"""Alerts: the built-in rule engine, silences, channels, the delivery outbox and the Alertmanager hook.

`engine`, `rules`, `silence_rules` and `observation` are the pure core (time passed in, no I/O);
`channels` talk to the world; `jobs` and `delivery` run them with storage on the elected leader.
"""
