"""The drctl hub: shared vocabulary, storage, HTTP API, dashboard, monitoring, CLI and app wiring."""
