#!/usr/bin/env bash
# Make sure the services the tests talk to answer: RabbitMQ (AMQP handshake on 5672, management API
# 15672) and Mosquitto (1883). A RabbitMQ that accepts TCP but no longer answers the AMQP handshake is
# restarted. Idempotent: enables the management plugin only when it is not on yet.
set -uo pipefail
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# AMQP 0-9-1: the server answers the protocol header with a connection.start frame (type 1).
amqp_answers() {
  timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/5672 && printf "AMQP\x00\x00\x09\x01" >&3 &&
    [ "$(head -c 1 <&3 | od -An -tu1 | tr -d " ")" = 1 ]' 2>/dev/null
}
wait_for() {
  for _ in $(seq 1 90); do "$@" && return 0; sleep 1; done
  return 1
}
start_rabbitmq() {
  # As root, Debian's wrapper starts the node through `su`, whose PAM session resets the open-files
  # limit to 1024; setpriv switches user without PAM, so the node inherits the limit raised below.
  if [ "$(id -u)" = 0 ] && id rabbitmq >/dev/null 2>&1 && command -v setpriv >/dev/null &&
    [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]; then
    (cd /var/lib/rabbitmq && HOME=/var/lib/rabbitmq setpriv --reuid=rabbitmq --regid=rabbitmq \
      --init-groups /usr/lib/rabbitmq/bin/rabbitmq-server -detached) >/dev/null 2>&1 || true
  else
    rabbitmq-server -detached >/dev/null 2>&1 || true
  fi
  wait_for amqp_answers || { echo "error: RabbitMQ does not answer on 127.0.0.1:5672 after 90 s" >&2; exit 1; }
}
restart_rabbitmq() {
  timeout -s KILL 30 rabbitmqctl stop >/dev/null 2>&1 || true
  pkill -9 -f 'beam.smp.*rabbit' 2>/dev/null || true
  sleep 2
  start_rabbitmq
}
# Each socket and queue segment of RabbitMQ takes a file handle; started with the common soft limit of
# 1024 it stops accepting connections (handshake never answered) once a few hundred queues exist.
open_files_limit() {
  local pid
  pid=$(pgrep -f 'beam.smp.*rabbit' | head -1)
  [ -n "$pid" ] && awk '/Max open files/ {print $4}' "/proc/$pid/limits" 2>/dev/null
}
# Raise our own soft limit first: a RabbitMQ started from here inherits it.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 20000 2>/dev/null || true
if ! listening 5672; then
  echo "==> starting RabbitMQ"
  start_rabbitmq
elif ! wait_for amqp_answers; then
  echo "==> RabbitMQ listens but does not answer the AMQP handshake: restarting it"
  restart_rabbitmq
elif limit=$(open_files_limit) && [ -n "$limit" ] && [ "$limit" != unlimited ] && [ "$limit" -lt 16384 ]; then
  echo "==> RabbitMQ runs with an open-files limit of $limit: restarting it with $(ulimit -Sn)"
  restart_rabbitmq
fi
# The controller creates per-job broker users through the management HTTP API.
if ! listening 15672; then
  echo "==> enabling the RabbitMQ management plugin"
  timeout 60 rabbitmq-plugins enable rabbitmq_management >/dev/null 2>&1 || true
  wait_for listening 15672 || { echo "error: RabbitMQ management API not on :15672 after 90 s" >&2; exit 1; }
fi
if ! listening 1883; then
  echo "==> starting Mosquitto"
  if ! command -v mosquitto >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq mosquitto >/dev/null
  fi
  mosquitto -d -p 1883 >/dev/null 2>&1 || true
  wait_for listening 1883 || { echo "error: nothing listens on 127.0.0.1:1883 after 90 s (Mosquitto)" >&2; exit 1; }
fi
echo "==> services up: RabbitMQ :5672 (management :15672), Mosquitto :1883"
