-- A patient's erasure (storage/erasure.py) keeps their appointments as anonymous remains:
-- service, staff member, time and status stay for the clinic's accounting and attendance; the
-- link to the contact, the notes and the idempotency key go. So an appointment may have no contact.
alter table appointments alter column contact_id drop not null;

-- Retention (consumers/retention.py) deletes an organization's messages by age: the user's send
-- time for inbound messages, ours for outbound ones, else when the row was stored.
create index chat_messages_org_age on chat_messages (organization_id, (coalesce(sent_at, created_at)));
