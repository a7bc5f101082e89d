-- The hub's database on a local PostgreSQL (Debian: apt-get install postgresql).
-- Run as the postgres user: sudo -u postgres psql -f deploy/postgresql/setup.sql
-- The hub connects through the Unix socket with peer authentication as the system user
-- `atelier`, so no password is stored: database_url = "postgresql+psycopg://atelier@/atelier?host=/run/postgresql"
CREATE ROLE atelier LOGIN;
CREATE DATABASE atelier OWNER atelier;
