"""The applications on top of the services: the command line, the simulated week (demo) and the
registry of services. Only this layer imports the services by name."""
