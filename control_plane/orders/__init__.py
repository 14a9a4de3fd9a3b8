"""The order lifecycle: intake, the dispatch chain, held-order retry, moves, DC cancels and DC events.

Every write to the order tables goes through `repository` (one interface; a PostgreSQL fast path
and a session path); services decide, the request or job that owns the unit of work commits.
"""
