"""Cache stores: where cached search answers live (this process, or Redis)."""
