"""Watching DCs and integrations: leader election, the scheduler, probes and stored health.

`health` is the pure core (hysteresis over probe results, time passed in); `probes` is its HTTP
edge; `jobs` folds probe results into stored health on the elected leader.
"""
