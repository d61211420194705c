"""live: the backend of a live dashboard."""
