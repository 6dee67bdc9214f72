"""The node's control side: the supervisor process, the state file shared with the workers,
the status listener and the config watcher."""
