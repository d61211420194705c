"""A small billing service: the app docs/your-app.md walks through, as the docs test deploys it."""
