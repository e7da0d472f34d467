# syntax=docker/dockerfile:1
#
# One image for every Một Cửa service. The entrypoint is the `motcua` command:
#
#   docker build -t motcua:latest .
#   docker run --rm motcua:latest                  # `motcua up`: every built service
#   docker run --rm motcua:latest run catalog      # one service
#   docker run --rm motcua:latest migrate          # apply the migrations
#   docker run --rm motcua:latest catalog load     # publish the shipped catalogue
#
# Configuration comes from the environment (AMQP_URI, DATABASE_URL, LOG_LEVEL, ...; see
# services/*/config.yml). docker-compose.yml beside this file starts the whole system.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: a virtualenv at /opt/venv with the pinned dependencies and the project -------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src

# The dependencies first, in their own layer: it is rebuilt only when pyproject.toml or
# constraints.txt change, not on every change of the code.
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
 && pip install --no-cache-dir -c constraints.txt -r /tmp/requirements.txt

# Then the project itself: a regular (non-editable) install, so the package data (service
# config.yml, templates, migrations, catalogue and calendar data) lands in site-packages.
COPY . .
# The gateway's protobuf code is generated here, by the build, never kept in git.
RUN pip install --no-cache-dir -c constraints.txt grpcio-tools \
 && python -m grpc_tools.protoc -I services/gateway/proto --python_out=. --pyi_out=. --grpc_python_out=. \
        services/gateway/proto/motcua/v1/*.proto \
 && pip uninstall -y grpcio-tools \
 && pip install --no-cache-dir -c constraints.txt . \
 && pip check

# --- runtime: the virtualenv only, run as an unprivileged user --------------------------------
FROM ${PYTHON_IMAGE} AS runtime

# DejaVu fonts: the official forms are PDFs with Vietnamese diacritics (MOTCUA_FONT_DIR).
RUN apt-get update \
 && apt-get install -y --no-install-recommends fonts-dejavu-core \
 && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 motcua \
 && useradd --system --uid 10001 --gid motcua --home-dir /home/motcua --create-home \
        --shell /usr/sbin/nologin motcua \
 && mkdir /keys && chown motcua:motcua /keys    # the `keys` volume (signing keys) starts owned by motcua

COPY --from=builder /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LOG_FORMAT=json

WORKDIR /home/motcua
USER 10001:10001

# HTTP (/health, /metrics, the API) of catalog 8001, intake 8002, routing 8003, fees 8004,
# notify 8005, the gateway 8006 (/health, /metrics); the gateway's gRPC 50051.
EXPOSE 8001 8002 8003 8004 8005 8006 50051

ENTRYPOINT ["motcua"]
CMD ["up"]
