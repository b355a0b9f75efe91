# surveysync as a container: `docker build -t surveysync .`
#
#   docker run -d --name surveysync --restart unless-stopped --stop-timeout 45 \
#     -v surveysync-data:/var/lib/surveysync -v /etc/surveysync:/etc/surveysync:ro surveysync
#
# /etc/surveysync holds surveysync.toml (and any secret files it names), readable by uid 10001.
# The volume /var/lib/surveysync holds the ledger, the heartbeat, the outbox and the log files.

# --- build: install surveysync and its dependencies into a virtual environment ------------
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/surveysync/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# The postgresql extra lets a chain's stores share one PostgreSQL ledger.
RUN /opt/surveysync/venv/bin/pip install --no-cache-dir '.[postgresql]'

# --- runtime ------------------------------------------------------------------------------
FROM python:3.11-slim
# ODBC driver manager and the drivers for POS databases reached through pyodbc (PostgreSQL,
# MariaDB/MySQL, SQLite); tzdata so every IANA zone in store.timezone resolves.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        unixodbc odbc-postgresql odbc-mariadb libsqliteodbc tzdata \
    && rm -rf /var/lib/apt/lists/*

# A fixed, non-root uid/gid, so files in the volume and the mounted config can be granted
# to it from the host (chown root:10001, chmod 0640).
RUN groupadd --system --gid 10001 surveysync \
    && useradd --system --uid 10001 --gid surveysync --home-dir /var/lib/surveysync \
        --shell /usr/sbin/nologin surveysync \
    && install -d -o surveysync -g surveysync -m 0750 /var/lib/surveysync \
    && install -d -m 0755 /etc/surveysync

COPY --from=build /opt/surveysync/venv /opt/surveysync/venv
ENV PATH=/opt/surveysync/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    SURVEYSYNC_CONFIG=/etc/surveysync/surveysync.toml \
    SURVEYSYNC__LOGGING__DIR=/var/lib/surveysync/logs

USER surveysync
# The data belongs here, inside the volume: make the config with
# `surveysync init --data-dir /var/lib/surveysync` (a relative path in the config is relative
# to the config's own folder, /etc/surveysync, which the container cannot write).
WORKDIR /var/lib/surveysync
VOLUME ["/var/lib/surveysync"]

# surveysync runs as PID 1 and stops cleanly within 30 s of SIGTERM. `docker stop` waits
# only 10 s by default: run with --stop-timeout 45 (or `docker stop -t 45`).
STOPSIGNAL SIGTERM
# Unhealthy when the latest run failed (status exits 1; any other failure maps to 1 too).
HEALTHCHECK --interval=5m --timeout=30s --start-period=1m --retries=2 \
    CMD surveysync status --json > /dev/null 2>&1 || exit 1

ENTRYPOINT ["surveysync"]
CMD ["run"]
