-- Sends whose outcome is in doubt (consumers/send_doubts.py, storage/send_doubts.py).
-- send_started_at now means "the request may be on the wire": it is set once the connection to
-- Gupshup is open and before the first byte of the request is written.
alter table chat_messages
  -- the request may have reached Gupshup (a read timeout, a dropped connection, a 5xx, a worker
  -- killed mid-request) and no answer said whether it did: evidence is awaited until a grace ends
  add column send_doubt_at timestamptz,
  -- when the resolver last re-queued this row for a decision (so it does not every tick)
  add column send_checked_at timestamptz,
  -- how many times it was sent again for lack of evidence (each counted in a metric)
  add column send_resends integer not null default 0,
  -- the outbound message as queued, kept while it may be on the wire or in doubt, so it can be
  -- re-queued even when its stream entry is gone
  add column send_request jsonb;

-- The few rows on the wire or in doubt: what the resolver and the evidence lookups read.
create index chat_messages_send_open on chat_messages (organization_id, send_started_at)
  where send_started_at is not null and provider_message_id is null and direction = 'outbound';
