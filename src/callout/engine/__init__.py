"""Orchestration: the apiCall node, the flow runner and the node registry; stores nothing."""
