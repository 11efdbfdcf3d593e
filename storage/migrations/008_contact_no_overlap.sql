-- One contact never holds two active appointments that overlap: a turn replayed after Redis
-- lost writes, or two chats of one person, cannot book them twice at the same time with two
-- staff members (storage/appointments.py stops at this constraint instead of trying the next
-- staff member). Completed and no-show appointments are history and do not count.
alter table appointments add constraint appointments_contact_no_overlap
  exclude using gist (organization_id with =, contact_id with =, tstzrange(starts_at, ends_at) with &&)
  where (status = 'confirmed');
