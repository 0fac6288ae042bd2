"""Partner registry, keys, request signing and verification, and the partner-side client."""
