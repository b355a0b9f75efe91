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
# postgresql: a chain's stores share one PostgreSQL ledger (and a POS on PostgreSQL);
# mysql: a POS on MariaDB/MySQL (pymysql); mssql: a POS on SQL Server (pyodbc and
# Microsoft's ODBC Driver 18, which surveysync finds inside its wheel).
RUN /opt/surveysync/venv/bin/pip install --no-cache-dir '.[postgresql,mysql,mssql]'

# --- runtime ------------------------------------------------------------------------------
FROM python:3.11-slim
# The ODBC driver manager and the ODBC drivers a SQLAlchemy dialect can use: SQL Server
# (mssql+pyodbc: FreeTDS here, Microsoft's driver from the mssql extra, which needs libltdl7
# and the Kerberos libraries) and MariaDB/MySQL (mysql+pyodbc). PostgreSQL and SQLite are read
# through psycopg and Python's sqlite3, never ODBC. tzdata: every IANA zone in store.timezone.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        unixodbc libltdl7 libgssapi-krb5-2 tdsodbc odbc-mariadb tzdata \
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
