"""The runtime every service stands on: database, outbox, inbox, RPC, HTTP plumbing, the
container, observability, clock, configuration and logs. It imports the contracts, never a
service or an application."""
