"""pagerd: the daemon: actors, socket server, store, outbox and transports."""
