#!/usr/bin/env bash
# Set up streamflow from nothing and run it.
#   ./dev.sh main        run the main job (bundled events -> keyed aggregation -> exactly-once
#                        SQLite, with a crash midway and a check against a failure-free run)
#   ./dev.sh test [ARGS] run the test suite (ARGS go to pytest)
#   ./dev.sh example NAME [ARGS]
#                        run examples/NAME.py (a Kafka example starts the project's broker)
# Everything installs into .venv; outside this directory, packages the machine lacks
# (python3-venv, Java and Maven, mariadb-server, chromium and chromium-driver for the
# dashboard's browser test) are installed with apt-get, and the Kafka
# broker's jars are cached in ~/.cache/streamflow (STREAMFLOW_CACHE).
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=${STREAMFLOW_VENV:-.venv}

need_python() {
  if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "dev.sh: streamflow needs Python 3.11 or newer as \$PYTHON (now: $PYTHON)" >&2
    exit 2
  fi
}

# Python packages go into $VENV quietly: pip's and setuptools' output (notices, the
# editable-install warning banner) goes to $VENV/setup.log and is shown only if the
# install fails. The install is skipped while pyproject.toml and setup.py are unchanged
# since the last one that succeeded (the editable install follows source changes by
# itself).
setup() {
  need_python
  if [ ! -x "$VENV/bin/python" ]; then
    if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
      echo "dev.sh: installing python3-venv with apt-get" >&2
      apt-get update -qq && apt-get install -y -qq python3-venv
      rm -rf "$VENV" && "$PYTHON" -m venv "$VENV"
    fi
  fi
  local stamp="$VENV/.streamflow-installed" log="$VENV/setup.log" wanted
  wanted="$(cat pyproject.toml setup.py | cksum) $(pwd)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
    return
  fi
  rm -f "$stamp"
  if ! {
    "$VENV/bin/python" -m pip install --disable-pip-version-check --upgrade pip &&
      "$VENV/bin/python" -m pip install --disable-pip-version-check -e '.[test]'
  } >"$log" 2>&1; then
    cat "$log" >&2
    echo "dev.sh: installing streamflow and its Python packages into $VENV failed (pip's output above, also in $log)" >&2
    exit 1
  fi
  echo "$wanted" >"$stamp"
}

# The Kafka broker of the tests is the real JVM one, fetched from Maven Central by Maven
# (streamflow/devtools/kafka_broker.py); Java 17 and Maven come from Debian when missing.
need_kafka() {
  if [ -n "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then return; fi
  if ! command -v java >/dev/null || ! command -v mvn >/dev/null; then
    echo "dev.sh: installing Java 17 and Maven with apt-get (to fetch and run the Kafka broker)" >&2
    apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless maven
  fi
  "$VENV/bin/python" -c 'from streamflow.devtools.kafka_broker import ensure_kafka; ensure_kafka()'
}

# The MySQL tests and examples start their own MariaDB (streamflow/devtools/mariadb_server.py)
# from Debian's mariadb-server, unless MYSQL_URL points at a running server.
need_mysql() {
  if [ -n "${MYSQL_URL:-}" ]; then return; fi
  if ! command -v mariadbd >/dev/null && [ ! -x /usr/sbin/mariadbd ]; then
    echo "dev.sh: installing mariadb-server with apt-get (for the MySQL sink's tests and examples)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mariadb-server
  fi
}

# The dashboard's browser test drives Debian's Chromium through Debian's chromedriver
# (tests/integration/test_dashboard_browser.py); no browser is downloaded at run time.
need_browser() {
  if [ -x "${STREAMFLOW_CHROMIUM:-/usr/bin/chromium}" ] && [ -x "${STREAMFLOW_CHROMEDRIVER:-/usr/bin/chromedriver}" ]; then
    return
  fi
  echo "dev.sh: installing chromium and chromium-driver with apt-get (for the dashboard's browser test)" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
}

command=${1:-}
shift || true
case "$command" in
  main)
    setup
    exec "$VENV/bin/python" examples/events_to_sqlite.py "$@"
    ;;
  test)
    setup
    need_kafka
    need_mysql
    need_browser
    exec "$VENV/bin/python" -m pytest "$@"
    ;;
  example)
    name=${1:?usage: ./dev.sh example NAME (a file in examples/)}
    shift
    setup
    need_kafka
    need_mysql
    exec "$VENV/bin/python" "examples/$name.py" "$@"
    ;;
  *)
    echo "usage: ./dev.sh main | ./dev.sh test [pytest args] | ./dev.sh example NAME" >&2
    exit 2
    ;;
esac
