#!/usr/bin/env bash
# Make sure the services the tests talk to are listening: RabbitMQ (5672, management API 15672)
# and Mosquitto (1883). Idempotent: enables the management plugin only when it is not on yet.
set -uo pipefail
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {
  for _ in $(seq 1 60); do listening "$1" && return 0; sleep 1; done
  echo "error: nothing listens on 127.0.0.1:$1 after 60 s ($2)" >&2; return 1
}
if ! listening 5672; then
  echo "==> starting RabbitMQ"
  rabbitmq-server -detached >/dev/null 2>&1 || true
  wait_port 5672 "RabbitMQ" || exit 1
fi
# The controller creates per-job broker users through the management HTTP API.
if ! listening 15672; then
  echo "==> enabling the RabbitMQ management plugin"
  rabbitmq-plugins enable rabbitmq_management >/dev/null 2>&1 || true
  wait_port 15672 "RabbitMQ management" || exit 1
fi
if ! listening 1883; then
  echo "==> starting Mosquitto"
  if ! command -v mosquitto >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq mosquitto >/dev/null
  fi
  mosquitto -d -p 1883 >/dev/null 2>&1 || true
  wait_port 1883 "Mosquitto" || exit 1
fi
echo "==> services up: RabbitMQ :5672 (management :15672), Mosquitto :1883"
