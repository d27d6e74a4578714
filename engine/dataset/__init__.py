"""What a run writes and keeps: the durable store, answer cache, sinks, records, dedup, export."""
