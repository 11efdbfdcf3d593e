-- Outgoing webhooks for the CRM (storage/webhooks.py, docs/operator-api.md "Webhooks for the
-- CRM"). The secret signs every delivery (HMAC-SHA256), so it is kept as is, like the Gupshup
-- API key in platform_connections: whoever can read this table can forge deliveries to the
-- CRM. `skytide webhook add` shows it once; a removed endpoint stays for the record.
create table webhook_endpoints (
  id uuid primary key default gen_random_uuid(),
  organization_id uuid not null references organizations(id) on delete cascade,
  url text not null check (url ~ '^https?://'),
  secret text not null check (length(secret) >= 32),
  created_at timestamptz not null default now(),
  removed_at timestamptz
);
create index webhook_endpoints_org on webhook_endpoints (organization_id) where removed_at is null;
