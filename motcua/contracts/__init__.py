"""The contracts: what the services share as data. Event schemas, typed catalogue records, the
vocabulary with its Vietnamese labels, periods, codes, the working-day calendar and refusals.
The bottom layer: it imports nothing of the project."""
