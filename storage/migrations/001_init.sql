-- Skytide CRM schema. Plain SQL that also runs on Supabase (extensions it offers only).
create extension if not exists pg_trgm;
create extension if not exists unaccent;
create extension if not exists btree_gist;
create extension if not exists vector;

-- unaccent() is not immutable (it depends on the search path); this wrapper is, so indexes can
-- use it. Supabase installs extensions in the `extensions` schema, hence the search path.
create or replace function immutable_unaccent(text) returns text
  language sql immutable parallel safe strict
  set search_path = public, extensions, pg_catalog
  as $$ select unaccent('unaccent'::regdictionary, $1) $$;

create table organizations (
  id uuid primary key default gen_random_uuid(),
  name text not null,
  timezone text not null default 'America/Bogota',
  settings jsonb not null default '{}'::jsonb,
  created_at timestamptz not null default now()
);

create table platform_connections (
  id uuid primary key default gen_random_uuid(),
  organization_id uuid not null references organizations(id) on delete cascade,
  platform text not null default 'whatsapp' check (platform = 'whatsapp'),
  gupshup_app_name text not null,
  gupshup_app_id text,
  api_key text not null,
  source_phone text not null,
  webhook_token text,
  is_active boolean not null default true,
  created_at timestamptz not null default now()
);
create unique index platform_connections_app_name on platform_connections (gupshup_app_name);
create unique index platform_connections_app_id on platform_connections (gupshup_app_id)
  where gupshup_app_id is not null;
create index platform_connections_org on platform_connections (organization_id);

create table contacts (
  id uuid primary key default gen_random_uuid(),
  organization_id uuid not null references organizations(id) on delete cascade,
  name text,
  phone text not null,
  email text,
  notes text,
  created_at timestamptz not null default now()
);
create unique index contacts_org_phone on contacts (organization_id, phone);

create table chat_identities (
  id uuid primary key default gen_random_uuid(),
  organization_id uuid not null references organizations(id) on delete cascade,
  contact_id uuid not null references contacts(id) on delete cascade,
  phone text not null,
  profile_name text,
  bot_enabled boolean not null default true,
  bot_paused_at timestamptz,
  bot_paused_reason text,
  last_inbound_at timestamptz,
  created_at timestamptz not null default now()
);
create unique index chat_identities_org_phone on chat_identities (organization_id, phone);

create table chat_messages (
  id uuid primary key default gen_random_uuid(),
  organization_id uuid not null references organizations(id) on delete cascade,
  chat_identity_id uuid not null references chat_identities(id) on delete cascade,
  direction text not null check (direction in ('inbound', 'outbound')),
  message text,
  processed_text text,
  media_type text,
  media_url text,
  media_mime_type text,
  media_size_bytes bigint,
  media_sha256 text,
  provider_message_id text,
  whatsapp_message_id text,
  idempotency_key text,
  message_status text not null default 'pending'
    check (message_status in ('pending', 'sent', 'delivered', 'read', 'failed')),
  status_times jsonb not null default '{}'::jsonb,
  error_code integer,
  error_reason text,
  turn_id text,
  purpose text,
  send_started_at timestamptz,  -- set while a send request may be on the wire (see consumers/sender)
  artifacts jsonb not null default '{}'::jsonb,
  sent_at timestamptz,  -- when the user (inbound) or we (outbound) sent it
  created_at timestamptz not null default now()
);
create unique index chat_messages_provider_id on chat_messages (organization_id, provider_message_id)
  where provider_message_id is not null;
create unique index chat_messages_whatsapp_id on chat_messages (organization_id, whatsapp_message_id)
  where whatsapp_message_id is not null;
create unique index chat_messages_idempotency on chat_messages (organization_id, idempotency_key)
  where idempotency_key is not null;
create index chat_messages_chat_time on chat_messages (chat_identity_id, created_at desc);
create index chat_messages_text_search on chat_messages
  using gin (to_tsvector('spanish', immutable_unaccent(coalesce(processed_text, message, ''))));

create table services (
  id uuid primary key default gen_random_uuid(),
  organization_id uuid not null references organizations(id) on delete cascade,
  name text not null,
  description text not null default '',
  duration_minutes integer not null check (duration_minutes > 0),
  price numeric(12, 2) not null default 0,
  currency text not null default 'COP',
  active boolean not null default true,
  embedding vector(384),
  created_at timestamptz not null default now()
);
create index services_org on services (organization_id) where active;
create index services_search on services
  using gin (to_tsvector('spanish', immutable_unaccent(name || ' ' || description)));
create index services_trgm on services using gin (immutable_unaccent(lower(name)) gin_trgm_ops);

create table knowledge_entries (
  id uuid primary key default gen_random_uuid(),
  organization_id uuid not null references organizations(id) on delete cascade,
  question text not null,
  answer text not null,
  embedding vector(384),
  created_at timestamptz not null default now()
);
create index knowledge_org on knowledge_entries (organization_id);
create index knowledge_search on knowledge_entries
  using gin (to_tsvector('spanish', immutable_unaccent(question || ' ' || answer)));
create index knowledge_trgm on knowledge_entries using gin (immutable_unaccent(lower(question)) gin_trgm_ops);

create table staff (
  id uuid primary key default gen_random_uuid(),
  organization_id uuid not null references organizations(id) on delete cascade,
  name text not null,
  role text not null default '',
  active boolean not null default true,
  created_at timestamptz not null default now()
);
create index staff_org on staff (organization_id) where active;

-- Which staff members perform which services (no rows for a staff member means: all services).
create table staff_services (
  staff_id uuid not null references staff(id) on delete cascade,
  service_id uuid not null references services(id) on delete cascade,
  organization_id uuid not null references organizations(id) on delete cascade,
  primary key (staff_id, service_id)
);

create table business_hours (
  id uuid primary key default gen_random_uuid(),
  organization_id uuid not null references organizations(id) on delete cascade,
  weekday smallint not null check (weekday between 0 and 6), -- 0 = Monday (ISO - 1)
  opens time not null,
  closes time not null,
  check (opens < closes)
);
create index business_hours_org on business_hours (organization_id, weekday);

create table appointments (
  id uuid primary key default gen_random_uuid(),
  organization_id uuid not null references organizations(id) on delete cascade,
  contact_id uuid not null references contacts(id) on delete cascade,
  service_id uuid not null references services(id),
  staff_id uuid not null references staff(id),
  starts_at timestamptz not null,
  ends_at timestamptz not null,
  status text not null default 'confirmed' check (status in ('confirmed', 'cancelled', 'completed', 'no_show')),
  idempotency_key text,
  notes text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  check (starts_at < ends_at),
  -- One staff member cannot be booked twice for overlapping times (cancelled ones free the slot).
  constraint appointments_no_double_booking
    exclude using gist (staff_id with =, tstzrange(starts_at, ends_at) with &&)
    where (status <> 'cancelled')
);
create index appointments_org_time on appointments (organization_id, starts_at);
create index appointments_contact on appointments (contact_id, starts_at);
create unique index appointments_idempotency on appointments (organization_id, idempotency_key)
  where idempotency_key is not null;

create table contact_authorizations (
  id uuid primary key default gen_random_uuid(),
  organization_id uuid not null references organizations(id) on delete cascade,
  contact_id uuid not null references contacts(id) on delete cascade,
  channel text not null default 'whatsapp',
  status text not null check (status in ('opted_in', 'opted_out')),
  source text not null,  -- user_event, keyword, booking, provider_error_1012, ...
  detail text,
  updated_at timestamptz not null default now()
);
create unique index contact_authorizations_contact on contact_authorizations (contact_id, channel);
create index contact_authorizations_org on contact_authorizations (organization_id);

create table thread_summaries (
  id uuid primary key default gen_random_uuid(),
  organization_id uuid not null references organizations(id) on delete cascade,
  chat_identity_id uuid not null references chat_identities(id) on delete cascade,
  summary text not null,
  turns_covered integer not null default 0,
  updated_at timestamptz not null default now()
);
create unique index thread_summaries_chat on thread_summaries (chat_identity_id);
