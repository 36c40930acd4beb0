#!/usr/bin/env python3
"""Writes N Sluice events as JSON lines, the input format of dlt_load.py.

For trying the dlt peer by hand; `sluice bench` writes its own input. The events
follow the same order saga as the sink benchmark (OrderPlaced, PaymentAuthorized,
OrderConfirmed, ShipmentCreated, PaymentCaptured, ShipmentDispatched,
ShipmentDelivered), with the envelope's keys: event_id, event_type,
schema_version, stream_type, stream_id, stream_version, global_position,
recorded_at (RFC 3339), correlation_id, causation_id, topic, partition,
kafka_offset and payload (a nested object).

    python3 bench/peers/gen_events.py --rows 100000 --output /tmp/events.jsonl

Standard library only, so any python3 runs it.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections import defaultdict
from datetime import datetime, timedelta, timezone

TOPICS = ("orders.events", "payments.events", "shipping.events")
PARTITIONS = 3


def saga(i: int, order: str, payment: str, shipment: str) -> list[tuple[int, str, str, int, str, dict]]:
    """One order's events: (topic index, stream type, stream id, stream version, type, payload)."""
    lines = [
        {"sku": "BOOK-1", "quantity": 2, "unit_price_minor": 1250},
        {"sku": "PEN-9", "quantity": 1, "unit_price_minor": 300},
    ]
    return [
        (0, "order", order, 1, "OrderPlaced",
         {"order_id": order, "customer_id": f"customer-{i % 20_000:05}", "currency": "EUR",
          "lines": lines, "total_minor": 2800}),
        (1, "payment", payment, 1, "PaymentAuthorized",
         {"payment_id": payment, "order_id": order, "amount_minor": 2800, "currency": "EUR"}),
        (0, "order", order, 2, "OrderConfirmed", {"order_id": order}),
        (2, "shipment", shipment, 1, "ShipmentCreated", {"shipment_id": shipment, "order_id": order}),
        (1, "payment", payment, 2, "PaymentCaptured",
         {"payment_id": payment, "order_id": order, "amount_minor": 2800}),
        (2, "shipment", shipment, 2, "ShipmentDispatched",
         {"shipment_id": shipment, "order_id": order, "carrier": "DHL Express",
          "tracking_number": f"JD{i:018}"}),
        (2, "shipment", shipment, 3, "ShipmentDelivered", {"shipment_id": shipment, "order_id": order}),
    ]


def generate(rows: int, out) -> None:
    start = datetime.now(timezone.utc) - timedelta(hours=1)
    offsets: dict[tuple[str, int], int] = defaultdict(int)
    position = 0
    i = 0
    while position < rows:
        order, payment, shipment = (str(uuid.uuid4()) for _ in range(3))
        causation = None
        for step, (topic_index, stream_type, stream_id, version, event_type, payload) in enumerate(
            saga(i, order, payment, shipment)
        ):
            if position == rows:
                break
            event_id = str(uuid.uuid4())
            topic = TOPICS[topic_index]
            # Round-robin over partitions, offsets counting up per partition, as the
            # sink's reader hands records over.
            partition = position % PARTITIONS
            recorded_at = start + timedelta(milliseconds=i * 20 + step * 7)
            position += 1
            event = {
                "event_id": event_id,
                "event_type": event_type,
                "schema_version": 1,
                "stream_type": stream_type,
                "stream_id": stream_id,
                "stream_version": version,
                "global_position": position,
                "recorded_at": recorded_at.isoformat(timespec="microseconds"),
                "correlation_id": order,
                "causation_id": causation or event_id,
                "topic": topic,
                "partition": partition,
                "kafka_offset": offsets[(topic, partition)],
                "payload": payload,
            }
            offsets[(topic, partition)] += 1
            causation = event_id
            out.write(json.dumps(event, separators=(",", ":")))
            out.write("\n")
        i += 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=100_000, help="events to write (default 100000)")
    parser.add_argument("--output", required=True, help="JSON-lines file to write ('-' for stdout)")
    args = parser.parse_args()
    if args.rows < 1:
        parser.error("--rows must be at least 1")
    if args.output == "-":
        generate(args.rows, sys.stdout)
    else:
        with open(args.output, "w", encoding="utf-8") as out:
            generate(args.rows, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
