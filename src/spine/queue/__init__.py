"""Workers: claim jobs from the database queue and run them."""
