-- Memory as the seed names it: thread_summaries.summary_text, and contacts.first_name (what the
-- advisor template and a friendly reply use), kept in step with contacts.name by a trigger so
-- every writer of the name (booking, save_contact_name, the CRM) fills it without knowing.
alter table thread_summaries rename column summary to summary_text;

alter table contacts add column first_name text;
update contacts set first_name = nullif(split_part(btrim(name), ' ', 1), '') where name is not null;

create function contacts_first_name() returns trigger language plpgsql as $$
begin
  if new.name is distinct from (case when tg_op = 'UPDATE' then old.name end)
     and (tg_op = 'INSERT' and new.first_name is null
          or tg_op = 'UPDATE' and new.first_name is not distinct from old.first_name) then
    new.first_name := nullif(split_part(btrim(coalesce(new.name, '')), ' ', 1), '');
  end if;
  return new;
end $$;

create trigger contacts_first_name before insert or update of name on contacts
  for each row execute function contacts_first_name();
