"""Runbook executions: started by hand or by an alert, advanced by the leader, approved and
aborted, all on the record. The engine itself is the pure `runbooks` package."""
