"""Storage: the typed ORM (models), engine and sessions (session), read queries for pages (queries)."""
