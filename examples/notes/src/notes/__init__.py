"""notes: a small Starlette service, as someone else would write it."""
