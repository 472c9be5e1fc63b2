"""Kafka: a source that keeps its offsets in operator state, and a sink with delivery
guarantees none, at-least-once and exactly-once (transactions, DESIGN.md section 6)."""
