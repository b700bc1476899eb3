"""Decision logic and the commerce domain. No Ray, no Redis, no HTTP here."""
