#!/usr/bin/env python3
"""Print a Switchboard topic as JSON lines, decoded with nothing but schemas/avro/*.avsc.

    pip install -r docs/examples/requirements.txt
    python3 docs/examples/decode_topic.py localhost:9092 interaction.events [--prefix P] [--max N]

Every record value is Avro in the single-object encoding: the marker C3 01, the 8-byte
CRC-64-AVRO (Rabin) fingerprint of the writer's schema, little-endian, then the Avro binary
body. The fingerprint picks the .avsc (current or released) that wrote it.
"""
import argparse
import datetime
import io
import json
import pathlib
import sys

import fastavro
from confluent_kafka import Consumer, KafkaError, TopicPartition, OFFSET_BEGINNING

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
SCHEMAS = pathlib.Path(__file__).resolve().parents[2] / "schemas" / "avro"


def load_schemas():
    """Fingerprint (8 bytes, as written in records) -> parsed schema, for every .avsc."""
    by_fingerprint = {}
    for path in sorted(SCHEMAS.rglob("*.avsc")):
        schema = fastavro.parse_schema(json.loads(path.read_text()))
        canonical = fastavro.schema.to_parsing_canonical_form(schema)
        fingerprint = fastavro.schema.fingerprint(canonical, "CRC-64-AVRO")
        by_fingerprint[bytes.fromhex(fingerprint)] = (path.relative_to(SCHEMAS), schema)
    return by_fingerprint


def decode(value, schemas):
    if value is None or len(value) < 10 or value[:2] != b"\xc3\x01":
        raise ValueError("not an Avro single-object record")
    found = schemas.get(value[2:10])
    if found is None:
        raise ValueError("unknown schema fingerprint " + value[2:10].hex())
    # return_record_name: a union of records decodes to (branch name, value), so the event type
    # (e.g. "switchboard.interaction.event.Submitted") is kept.
    return fastavro.schemaless_reader(io.BytesIO(value[10:]), found[1], return_record_name=True)


def to_json(value):
    """timestamp-millis fields decode to datetimes: print them as epoch milliseconds."""
    if isinstance(value, datetime.datetime):
        return (value - EPOCH) // datetime.timedelta(milliseconds=1)
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bootstrap")
    parser.add_argument("topic")
    parser.add_argument("--prefix", default="", help="the deployment's kafka.topic_prefix")
    parser.add_argument("--max", type=int, default=None)
    args = parser.parse_args()
    schemas = load_schemas()
    topic = args.prefix + args.topic
    consumer = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": "decode-topic-example",
        "enable.auto.commit": False,
        # Only committed transactions (the default of librdkafka-based clients, not of Java's).
        "isolation.level": "read_committed",
        # Told when a partition's end is reached: on a transactional topic the last offsets are
        # commit markers, never delivered, so "the last offset was read" never happens.
        "enable.partition.eof": True,
    })
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    ends = {}
    for p in partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        if high > low:
            ends[p] = high
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    printed = 0
    while ends and (args.max is None or printed < args.max):
        message = consumer.poll(10)
        if message is None:
            break
        if message.error():
            if message.error().code() == KafkaError._PARTITION_EOF:
                for tp in consumer.position([TopicPartition(topic, p) for p in list(ends)]):
                    if tp.offset >= ends[tp.partition]:
                        ends.pop(tp.partition, None)
                continue
            raise SystemExit(f"error: {message.error()}")
        if message.offset() + 1 >= ends.get(message.partition(), 0):
            ends.pop(message.partition(), None)
        line = {"partition": message.partition(), "offset": message.offset(),
                "key": (message.key() or b"").decode("utf-8", "replace")}
        try:
            line["value"] = decode(message.value(), schemas)
        except ValueError as e:
            line["error"] = str(e)
        print(json.dumps(line, default=to_json), flush=True)
        printed += 1
    consumer.close()


if __name__ == "__main__":
    sys.exit(main())
