"""Infrastructure: the event store on eventsourcing's recorders, view tables, HTTP and CLI."""
