"""Prometheus metrics shared by every service. Labels are topics, stages and reason codes:
names the platform chooses, never data from messages."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server


@dataclass(frozen=True)
class RuntimeMetrics:
    registry: CollectorRegistry
    consumed: Counter
    produced: Counter
    dead_letters: Counter
    transactions: Counter
    batch_seconds: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> RuntimeMetrics:
        registry = registry or CollectorRegistry()
        return cls(
            registry=registry,
            consumed=Counter(
                "hs_messages_consumed", "Records consumed", ["topic"], registry=registry
            ),
            produced=Counter(
                "hs_messages_produced", "Records produced", ["topic"], registry=registry
            ),
            dead_letters=Counter(
                "hs_dead_letters",
                "Inputs sent to the dead-letter topic",
                ["stage", "reason_code"],
                registry=registry,
            ),
            transactions=Counter(
                "hs_transactions", "Kafka transactions by outcome", ["outcome"], registry=registry
            ),
            batch_seconds=Histogram(
                "hs_batch_seconds",
                "Time to process and commit one batch",
                buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
                registry=registry,
            ),
        )

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        """Expose /metrics at host:port (0 leaves it off); loopback unless a deployment puts it
        behind its own authenticated scraper network (HS_METRICS_HOST)."""
        if port:
            start_http_server(port, addr=host, registry=self.registry)
