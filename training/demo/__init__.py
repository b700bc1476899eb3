"""cartwise."""
