"""Scheduling model calls: permits, rate windows, AIMD caps, saturation, retries, the model client."""
