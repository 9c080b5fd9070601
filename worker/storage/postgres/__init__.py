"""The PostgreSQL backend (asyncpg): its SQL spellings and the statements it shapes itself."""
