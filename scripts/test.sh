#!/usr/bin/env bash
# Runs Weir's whole test suite on a fresh machine: installs the real Kafka clients
# the integration tests drive (kcat, confluent-kafka, kafka-python, kafkajs), builds the
# `weir` binary, and runs every crate's tests.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v kcat >/dev/null 2>&1; then
  echo "installing kcat" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq kcat >/dev/null
fi

VENV="target/pyenv"
if ! "$VENV/bin/python" -c 'import confluent_kafka, kafka' >/dev/null 2>&1; then
  echo "installing Python Kafka clients into $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check confluent-kafka==2.16.1 kafka-python==3.0.12
fi
export WEIR_PYTHON="$PWD/$VENV/bin/python"

# kafkajs (pinned in tests/clients/js/package-lock.json) for tests/tests/kafkajs.rs
if [ ! -d tests/clients/js/node_modules/kafkajs ]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "installing nodejs and npm" >&2
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq nodejs npm >/dev/null
  fi
  echo "installing kafkajs into tests/clients/js/node_modules" >&2
  npm ci --silent --prefix tests/clients/js
fi

export WEIR_BIN="$PWD/target/debug/weir"
# A failed test's error ends its output (anyhow backtraces would bury it);
# panics keep theirs.
export RUST_LIB_BACKTRACE=0

cargo build --workspace --bins
cargo test --workspace "$@"
