-- Staff schedules, time off, organization closures, and the customer's answer to a reminder.

-- When a staff member works, per weekday (0 = Monday). A staff member with no rows works
-- whenever the organization is open; with rows, only inside them (and inside opening hours).
create table staff_hours (
  id uuid primary key default gen_random_uuid(),
  organization_id uuid not null references organizations(id) on delete cascade,
  staff_id uuid not null references staff(id) on delete cascade,
  weekday smallint not null check (weekday between 0 and 6),
  starts time not null,
  ends time not null,
  check (starts < ends)
);
create index staff_hours_staff on staff_hours (organization_id, staff_id, weekday);

-- A staff member away: whole days (midnight to midnight, local) or part of a day.
create table staff_time_off (
  id uuid primary key default gen_random_uuid(),
  organization_id uuid not null references organizations(id) on delete cascade,
  staff_id uuid not null references staff(id) on delete cascade,
  starts_at timestamptz not null,
  ends_at timestamptz not null,
  reason text not null default '',
  check (starts_at < ends_at)
);
create index staff_time_off_staff on staff_time_off (organization_id, staff_id, starts_at);

-- Days the whole organization is closed (besides public holidays, which come from the country).
create table closures (
  organization_id uuid not null references organizations(id) on delete cascade,
  day date not null,
  reason text not null default '',
  primary key (organization_id, day)
);

-- The customer confirmed they will come (a reminder's "Confirmar" button).
alter table appointments add column confirmed_by_contact_at timestamptz;
