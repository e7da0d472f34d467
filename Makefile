# The two commands of the quick start: `make up` (run the system) and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: up test install services

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

# Start PostgreSQL and RabbitMQ on this machine if they are down; create role and databases.
services:
	bash scripts/local-services.sh

up: install services
	$(BIN)/motcua migrate
	$(BIN)/motcua catalog load
	exec $(BIN)/motcua up

test: install services
	$(BIN)/python -m pytest
