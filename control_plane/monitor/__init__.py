"""Monitoring: probe hysteresis, built-in alert rules, alert state, silences, probes and alert channels.

The core (`health`, `alerts`, `rules`, `silences`, `observation`) is pure: time is passed in, no
I/O, no threads, only `control_plane.domain` and the standard library (an import-linter contract).
`probes` (HTTP) and `channels` (webhook, SNS, SES, SMTP) are the edges that talk to the world;
`control_plane.jobs` composes them with storage and runs them on the elected leader.
"""
