-- What changed in a chat identity, a contact or a contact's consent, by whomever: this app, the
-- CRM's SQL, the Supabase dashboard. Each worker process keeps the identities of known chats in
-- memory (storage/identity_cache.py) and reads this log about once a second to drop what
-- changed. A log polled through the pooler, not LISTEN/NOTIFY: behind PgBouncer in transaction
-- mode and Supabase's pooler a LISTEN is lost with its server session.
-- Rows name the changed row by its id, never by a phone: an erased person's log rows point to
-- nothing. The pollers trim rows older than an hour.
create table identity_changes (
  organization_id uuid not null,  -- no foreign key: rows are logged while an organization is deleted
  row_id uuid not null,  -- a chat identity's or a contact's id
  changed_at timestamptz not null default clock_timestamp()
);
create index identity_changes_changed_at on identity_changes (changed_at);

-- A chat identity: what a cached entry holds (not last_inbound_at, which every message writes:
-- `update of` keeps the trigger off that statement altogether).
create function identity_changes_from_chat() returns trigger language plpgsql as $$
begin
  if tg_op = 'UPDATE' and row(old.organization_id, old.phone, old.contact_id, old.kind,
      old.bot_enabled, old.profile_name, old.language) is not distinct from
      row(new.organization_id, new.phone, new.contact_id, new.kind, new.bot_enabled,
      new.profile_name, new.language) then
    return null;
  end if;
  insert into identity_changes (organization_id, row_id) values (old.organization_id, old.id);
  return null;
end $$;
create trigger identity_changes_from_chat
  after update of organization_id, phone, contact_id, kind, bot_enabled, profile_name, language
  or delete on chat_identities
  for each row execute function identity_changes_from_chat();

-- A contact: its name (a turn reads it) or its phone changed, or the contact is gone.
create function identity_changes_from_contact() returns trigger language plpgsql as $$
begin
  if tg_op = 'UPDATE' and (old.name, old.phone) is not distinct from (new.name, new.phone) then
    return null;
  end if;
  insert into identity_changes (organization_id, row_id) values (old.organization_id, old.id);
  return null;
end $$;
create trigger identity_changes_from_contact
  after update or delete on contacts
  for each row execute function identity_changes_from_contact();

-- Consent: an opt-out (or its end) changes whether the chat may be answered.
create function identity_changes_from_consent() returns trigger language plpgsql as $$
begin
  if tg_op = 'UPDATE' and (old.status, old.contact_id) is not distinct from (new.status, new.contact_id) then
    return null;
  end if;
  if tg_op <> 'INSERT' then
    insert into identity_changes (organization_id, row_id) values (old.organization_id, old.contact_id);
  end if;
  if tg_op <> 'DELETE' then
    insert into identity_changes (organization_id, row_id) values (new.organization_id, new.contact_id);
  end if;
  return null;
end $$;
create trigger identity_changes_from_consent
  after insert or update or delete on contact_authorizations
  for each row execute function identity_changes_from_consent();
