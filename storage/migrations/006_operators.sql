-- The clinic's team: operator credentials, who wrote each message, who took a chat over, and
-- chats with a staff phone (which are never customers).

-- An operator's bearer token is shown once by `skytide operator add`; only its SHA-256 is kept,
-- so a leaked table (or backup) opens no inbox. A revoked token stays for the record.
create table operator_tokens (
  id uuid primary key default gen_random_uuid(),
  organization_id uuid not null references organizations(id) on delete cascade,
  name text not null check (btrim(name) <> ''),  -- the staff member: "staff:<name>" authors their messages
  token_sha256 text not null,
  created_at timestamptz not null default now(),
  last_used_at timestamptz,
  revoked_at timestamptz
);
create unique index operator_tokens_sha256 on operator_tokens (token_sha256);
create index operator_tokens_org on operator_tokens (organization_id);

-- Who wrote a message: 'customer', 'bot', 'system' (confirmations, reminders, notices) or
-- 'staff:<name>'. Rows written before this migration keep NULL: readers derive it from the
-- direction and the purpose (storage/inbox.py), so no rewrite of a large table is needed here.
alter table chat_messages add column author text
  check (author is null or author in ('customer', 'bot', 'system') or author like 'staff:%');

-- Who took the chat over (bot_paused_reason says why); NULL when the bot paused it itself.
alter table chat_identities add column bot_paused_by text;

-- A chat with the organization's advisor or a staff phone is not a customer's: it has no
-- contact and never starts a turn.
alter table chat_identities add column kind text not null default 'customer'
  check (kind in ('customer', 'staff'));
alter table chat_identities alter column contact_id drop not null;
alter table chat_identities add constraint chat_identities_customer_has_contact
  check (kind = 'staff' or contact_id is not null);

-- The advisor's phone was upserted as a contact by the sender until now: mark its chat as
-- staff (its contact row stays, with whatever the CRM attached to it).
update chat_identities i set kind = 'staff', bot_enabled = false
  from organizations o
 where o.id = i.organization_id and i.phone = o.settings->>'advisor_phone';

-- The inbox lists paused chats first, then the latest ones: both without a scan of the table.
create index chat_identities_org_last_inbound on chat_identities (organization_id, last_inbound_at desc nulls last);
create index chat_identities_org_paused on chat_identities (organization_id, bot_paused_at desc)
  where not bot_enabled;
