"""The SQLite backend (aiosqlite): its SQL spellings and the statements it shapes itself."""
