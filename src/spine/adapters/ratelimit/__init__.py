"""Rate limiter stores: where the token buckets live."""
