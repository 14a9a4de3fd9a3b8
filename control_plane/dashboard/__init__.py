"""The status dashboard: one server-rendered page for operators, live, with the failover plan
shown before an operator acts on it; a token login kept in a session cookie."""
