# The two commands of the quick start: `make up` (run the system) and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: up test install services proto tools

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

# Start PostgreSQL and RabbitMQ on this machine if they are down; create role and databases.
services:
	bash scripts/local-services.sh

# The gateway's Python code, generated from its protobuf files (never edited, not in git).
PROTOS = $(wildcard services/gateway/proto/motcua/v1/*.proto)
proto: install
	$(BIN)/python -m grpc_tools.protoc -I services/gateway/proto --python_out=. --pyi_out=. \
		--grpc_python_out=. $(PROTOS)

# buf lints the protobuf files in the tests (npm's @bufbuild/buf ships the binary).
BUF_VERSION = 1.75.0
tools: .tools/node_modules/.bin/buf
.tools/node_modules/.bin/buf:
	npm install --prefix .tools --no-save --no-audit --no-fund @bufbuild/buf@$(BUF_VERSION)

# The personal-data keys of this machine's database: made once, kept
# in .pii.env (git-ignored); losing it loses the stored ID and phone numbers.
up: install services proto .pii.env
	set -a && . ./.pii.env && set +a && $(BIN)/motcua migrate && $(BIN)/motcua catalog load && exec $(BIN)/motcua up

.pii.env:
	$(BIN)/motcua pii keys > $@

test: install services proto tools
	$(BIN)/python -m pytest
	MOTCUA_TESTS_UNPATCHED=1 $(BIN)/python -m pytest tests/gateway

# A simulated working week, every service in one process on an embedded broker and PostgreSQL.
.PHONY: demo
demo: install
	$(BIN)/motcua demo --days 5 --seed 1
