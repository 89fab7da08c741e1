-- One schema per service in the closedloop database, named by each store URL's
-- ?schema=. The services create their tables here but not the schema itself.
-- Idempotent: safe to run at every start.
CREATE SCHEMA IF NOT EXISTS lead;
CREATE SCHEMA IF NOT EXISTS deal;
CREATE SCHEMA IF NOT EXISTS consent;
CREATE SCHEMA IF NOT EXISTS attribution;
CREATE SCHEMA IF NOT EXISTS insights;
