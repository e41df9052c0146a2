//! Request rate limits per class (auth, profile, read, write), keyed by signed-in user or client IP.
