-- The language a chat is in (es, en, pt: graph/language.py), remembered so a short "ok" does
-- not change it and the scheduler writes reminders in it; null until the customer said enough,
-- then the organization's `locale` applies.
alter table chat_identities add column language text check (language in ('es', 'en', 'pt'));
