#!/usr/bin/env bash
# Make bench/.venv-peers: the peer frameworks of bench/kafka_pipeline.py (Quix Streams and
# Faust), in an environment of their own so that their dependencies never touch the
# project's. From nothing; run again to refresh. Only needs Python 3.11+ ($PYTHON).
#   bash bench/setup.sh
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
VENV=.venv-peers
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
# Versions measured in bench/RESULTS.md; newer ones should work the same.
"$VENV/bin/python" -m pip install -q "quixstreams>=3.28,<4" "faust-streaming>=0.11" orjson
"$VENV/bin/python" -W ignore -c 'import quixstreams, faust; print("peers ready: quixstreams", quixstreams.__version__, "faust", faust.__version__)'
