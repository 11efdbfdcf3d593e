-- Every connection has a webhook token: a row without one (written by the CRM or by hand)
-- accepted webhooks from anyone. Rows without one get a random token (two random UUIDs, 244
-- bits), which `skytide org token` prints; from now on none can be NULL or blank.
update platform_connections
   set webhook_token = replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '')
 where webhook_token is null or btrim(webhook_token) = '';
alter table platform_connections alter column webhook_token set not null;
alter table platform_connections add constraint platform_connections_webhook_token_present
  check (btrim(webhook_token) <> '');
-- The ingress finds the connection by the token in the URL before it reads the body.
create index platform_connections_webhook_token on platform_connections (webhook_token);
