"""Channel backends: how the bytes of one channel travel (in-process, RabbitMQ, MQTT)."""
