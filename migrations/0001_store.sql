-- Chamada's store on PostgreSQL (docs/POSTGRES.md): limits (docs/API.md §5), idempotency
-- records (§8), the webhook outbox (§9) and call records (§15), in the schema `chamada`.
--
-- Applied by `cargo run -- migrate` (src/store/postgres/migrate.rs), in one transaction, once;
-- written to be harmless when run again. Every function takes the time from the caller
-- (milliseconds since the epoch) and never reads a clock: expiry is decided from the time
-- columns against that time, in every condition. Each port call of the store is one of these
-- functions or one plain statement: one round trip, pooler-safe (no session state).
--
-- Keys of limits and idempotency records are hex HMAC-SHA256 digests made by the service
-- (RATE_LIMIT_HASH_KEY): no IP address, number or API key is stored.

create schema if not exists chamada;

-- One row per limit key. A rolling limit keeps its admission times (oldest first, at most
-- `max` live ones); a UTC-day limit a counter and the end of its day.
create table if not exists chamada.limits (
    key           text primary key,
    times         bigint[] not null default '{}',
    day_count     integer  not null default 0,
    day_ends_ms   bigint   not null default 0,
    -- When nothing in the row counts any more (cleanup only; decisions use the times).
    expires_at_ms bigint   not null default 0
);
create index if not exists limits_expires_at on chamada.limits (expires_at_ms);

-- One row per scoped idempotency key. In progress: `expires_at_ms` is the lease's end; done:
-- the end of the replay window, and `response` the answer as JSON.
create table if not exists chamada.idempotency (
    key           text primary key,
    fingerprint   text    not null,
    done          boolean not null default false,
    response      text,
    expires_at_ms bigint  not null
);
create index if not exists idempotency_expires_at on chamada.idempotency (expires_at_ms);

create table if not exists chamada.outbox (
    id             text primary key,
    body           text    not null,
    state          text    not null default 'pending'
                   check (state in ('pending', 'delivered', 'failed')),
    attempts       integer not null default 0,
    due_at_ms      bigint  not null,
    lease_until_ms bigint  not null default 0,
    created_at_ms  bigint  not null,
    last_error     text,
    expires_at_ms  bigint  not null
);
create index if not exists outbox_pending on chamada.outbox (due_at_ms, created_at_ms)
    where state = 'pending';
create index if not exists outbox_failed on chamada.outbox (created_at_ms desc)
    where state = 'failed';
create index if not exists outbox_expires_at on chamada.outbox (expires_at_ms);

-- Call records: the masked number only. `history` is a JSON array of {status, at_ms}.
create table if not exists chamada.calls (
    call_id          text primary key,
    provider         text     not null,
    provider_call_id text,
    to_masked        text     not null,
    source           text     not null,
    status           text     not null,
    status_rank      smallint not null,
    created_at_ms    bigint   not null,
    updated_at_ms    bigint   not null,
    history          jsonb    not null default '[]',
    duration_secs    bigint,
    end_reason       text,
    summary          text,
    successful       text,
    token_hash       text     not null,
    expires_at_ms    bigint   not null
);
create index if not exists calls_provider_call_id on chamada.calls (provider_call_id)
    where provider_call_id is not null;
create index if not exists calls_expires_at on chamada.calls (expires_at_ms);

-- When the last opportunistic cleanup ran (one row).
create table if not exists chamada.housekeeping (
    id             boolean primary key default true check (id),
    cleaned_at_ms  bigint not null default 0
);
insert into chamada.housekeeping (id) values (true) on conflict do nothing;

-- Admission (docs/API.md §5): every check of one request, all or nothing, exact under
-- contention. The rows are created if absent and locked in key order (no deadlock between
-- requests sharing keys), then decided under the locks, as the memory store decides.
-- `p_window_ms[i]` is the rolling window, or 0 for a UTC-day counter. One row per check, in
-- the order given: `admitted` is the same on every row; admitted: `count` after this
-- admission and `at_ms` when its oldest counted admission leaves the window (the day's end);
-- refused: `count` before it and `at_ms` when a slot frees (0 for a check that has room).
create or replace function chamada.admit(
    p_keys text[], p_max integer[], p_window_ms bigint[], p_now bigint)
returns table (idx integer, admitted boolean, count integer, at_ms bigint)
language plpgsql
set search_path = ''
set lock_timeout = '2s'
as $$
declare
    n        integer := coalesce(array_length(p_keys, 1), 0);
    i        integer;
    r        chamada.limits%rowtype;
    live     bigint[];
    counts   integer[] := array_fill(0, array[n]);
    frees    bigint[]  := array_fill(0::bigint, array[n]);
    refused  boolean   := false;
    day_end  bigint    := (p_now / 86400000 + 1) * 86400000;
begin
    if n = 0 then
        return;
    end if;
    -- A new row counts nothing yet; its expiry keeps a concurrent cleanup away from it.
    insert into chamada.limits (key, expires_at_ms)
        select k, p_now + 86400000 from unnest(p_keys) as k order by k
        on conflict (key) do nothing;
    perform 1 from chamada.limits l where l.key = any (p_keys) order by l.key for update;

    for i in 1 .. n loop
        select * into strict r from chamada.limits l where l.key = p_keys[i];
        if p_window_ms[i] > 0 then
            live := array(select t from unnest(r.times) as t
                          where t + p_window_ms[i] > p_now order by t);
            counts[i] := coalesce(array_length(live, 1), 0);
            if counts[i] >= p_max[i] then
                refused := true;
                frees[i] := live[counts[i] - p_max[i] + 1] + p_window_ms[i];
            end if;
        else
            counts[i] := case when r.day_ends_ms > p_now then r.day_count else 0 end;
            if counts[i] >= p_max[i] then
                refused := true;
                frees[i] := greatest(r.day_ends_ms, p_now);
            end if;
        end if;
    end loop;

    if refused then
        for i in 1 .. n loop
            idx := i; admitted := false; count := counts[i]; at_ms := frees[i];
            return next;
        end loop;
        return;
    end if;

    for i in 1 .. n loop
        if p_window_ms[i] > 0 then
            update chamada.limits l
               set times = array(select t from unnest(l.times) as t
                                 where t + p_window_ms[i] > p_now order by t) || p_now,
                   expires_at_ms = p_now + p_window_ms[i]
             where l.key = p_keys[i]
            returning l.times[1] + p_window_ms[i], cardinality(l.times) into at_ms, count;
        else
            update chamada.limits l
               set day_count = case when l.day_ends_ms > p_now then l.day_count + 1 else 1 end,
                   day_ends_ms = day_end,
                   expires_at_ms = day_end
             where l.key = p_keys[i]
            returning l.day_ends_ms, l.day_count into at_ms, count;
        end if;
        idx := i; admitted := true;
        return next;
    end loop;
end;
$$;

-- Gives back the admission counted at `p_at` under each key (a provider's definite refusal):
-- a rolling limit loses one entry of that time, if it is there; a day counter one count, if
-- that admission was in its current day.
create or replace function chamada.refund(p_keys text[], p_window_ms bigint[], p_at bigint)
returns void
language plpgsql
set search_path = ''
set lock_timeout = '2s'
as $$
declare
    i integer;
begin
    for i in 1 .. coalesce(array_length(p_keys, 1), 0) loop
        if p_window_ms[i] > 0 then
            update chamada.limits l
               set times = l.times[1 : array_position(l.times, p_at) - 1]
                        || l.times[array_position(l.times, p_at) + 1 :]
             where l.key = p_keys[i] and p_at = any (l.times);
        else
            update chamada.limits l
               set day_count = greatest(l.day_count - 1, 0)
             where l.key = p_keys[i] and p_at < l.day_ends_ms;
        end if;
    end loop;
end;
$$;

-- Idempotency (docs/API.md §8): claims `p_key` for a request whose fingerprint is `p_fp`, or
-- says why not: `started`, `replay` (with the kept answer), `in_progress` or `mismatch`. An
-- expired record (a lease run out, a replay window over) is taken over.
create or replace function chamada.idempotency_begin(
    p_key text, p_fp text, p_now bigint, p_lease_ms bigint)
returns table (outcome text, kept text)
language plpgsql
set search_path = ''
set lock_timeout = '2s'
as $$
declare
    r chamada.idempotency%rowtype;
begin
    insert into chamada.idempotency as i (key, fingerprint, done, response, expires_at_ms)
        values (p_key, p_fp, false, null, p_now + p_lease_ms)
        on conflict (key) do update
           set fingerprint = excluded.fingerprint, done = false, response = null,
               expires_at_ms = excluded.expires_at_ms
         where i.expires_at_ms <= p_now;
    if found then
        outcome := 'started';
        return next;
        return;
    end if;
    -- The conflict locked the live row: it is read as it is now.
    select * into strict r from chamada.idempotency i where i.key = p_key;
    if r.fingerprint <> p_fp then
        outcome := 'mismatch';
    elsif not r.done then
        outcome := 'in_progress';
    else
        outcome := 'replay';
        kept := r.response;
    end if;
    return next;
end;
$$;

-- Keeps the answer of the request that holds `p_key` (same fingerprint) for replay until
-- `p_now + p_ttl_ms` and, in the same transaction, writes the webhook event of the call it
-- answers (`p_event_id` null: none). The event is written even when the key was taken over.
create or replace function chamada.idempotency_complete(
    p_key text, p_fp text, p_response text, p_now bigint, p_ttl_ms bigint,
    p_event_id text, p_event_body text, p_retention_ms bigint)
returns void
language plpgsql
set search_path = ''
set lock_timeout = '2s'
as $$
begin
    update chamada.idempotency i
       set done = true, response = p_response, expires_at_ms = p_now + p_ttl_ms
     where i.key = p_key and i.fingerprint = p_fp;
    if p_event_id is not null then
        perform chamada.outbox_enqueue(p_event_id, p_event_body, p_now, p_retention_ms);
    end if;
end;
$$;

-- Writes an event as pending, due now, unless its id is there (and still kept).
create or replace function chamada.outbox_enqueue(
    p_id text, p_body text, p_now bigint, p_retention_ms bigint)
returns void
language sql
set search_path = ''
as $$
    insert into chamada.outbox as o (id, body, state, attempts, due_at_ms, lease_until_ms,
                                     created_at_ms, last_error, expires_at_ms)
    values (p_id, p_body, 'pending', 0, p_now, 0, p_now, null, p_now + p_retention_ms)
    on conflict (id) do update
       set body = excluded.body, state = 'pending', attempts = 0, due_at_ms = excluded.due_at_ms,
           lease_until_ms = 0, created_at_ms = excluded.created_at_ms, last_error = null,
           expires_at_ms = excluded.expires_at_ms
     where o.expires_at_ms <= p_now;
$$;

-- Pending events due at `p_now` and not under a live lease, earliest due first. Also runs the
-- cleanup when the last one is more than a minute old (the sweep calls this regularly).
create or replace function chamada.outbox_due(p_now bigint, p_limit integer)
returns setof chamada.outbox
language plpgsql
set search_path = ''
as $$
begin
    if exists (select 1 from chamada.housekeeping h where h.cleaned_at_ms + 60000 <= p_now) then
        perform chamada.cleanup(p_now);
    end if;
    return query
        select * from chamada.outbox o
         where o.state = 'pending' and o.due_at_ms <= p_now and o.lease_until_ms <= p_now
         order by o.due_at_ms, o.created_at_ms
         limit p_limit;
end;
$$;

-- A call's record moves forward (docs/API.md §15): only to a higher rank, only while it
-- lives; the event in the same transaction. `outcome`: `applied` (with the record as JSON),
-- `unchanged` or `unknown`.
create or replace function chamada.call_advance(
    p_call_id text, p_status text, p_rank smallint, p_at bigint, p_duration bigint,
    p_end_reason text, p_summary text, p_successful text,
    p_event_id text, p_event_body text, p_retention_ms bigint)
returns table (outcome text, call_record text)
language plpgsql
set search_path = ''
set lock_timeout = '2s'
as $$
declare
    c chamada.calls%rowtype;
begin
    update chamada.calls k
       set status = p_status, status_rank = p_rank, updated_at_ms = p_at,
           history = k.history || jsonb_build_array(
               jsonb_build_object('status', p_status, 'at_ms', p_at)),
           duration_secs = coalesce(p_duration, k.duration_secs),
           end_reason = coalesce(p_end_reason, k.end_reason),
           summary = coalesce(p_summary, k.summary),
           successful = coalesce(p_successful, k.successful)
     where k.call_id = p_call_id and k.expires_at_ms > p_at and k.status_rank < p_rank
    returning * into c;
    if found then
        if p_event_id is not null then
            perform chamada.outbox_enqueue(p_event_id, p_event_body, p_at, p_retention_ms);
        end if;
        outcome := 'applied';
        call_record := chamada.call_json(c);
    elsif exists (select 1 from chamada.calls k
                   where k.call_id = p_call_id and k.expires_at_ms > p_at) then
        outcome := 'unchanged';
    else
        outcome := 'unknown';
    end if;
    return next;
end;
$$;

-- A record in the shape of the service's `CallRecord` (JSON).
create or replace function chamada.call_json(c chamada.calls)
returns text
language sql
immutable
set search_path = ''
as $$
    select jsonb_build_object(
        'call_id', c.call_id, 'provider', c.provider, 'provider_call_id', c.provider_call_id,
        'to_masked', c.to_masked, 'source', c.source, 'status', c.status,
        'created_at_ms', c.created_at_ms, 'updated_at_ms', c.updated_at_ms,
        'history', c.history, 'duration_secs', c.duration_secs, 'end_reason', c.end_reason,
        'summary', c.summary, 'successful', c.successful, 'token_hash', c.token_hash,
        'expires_at_ms', c.expires_at_ms)::text;
$$;

-- Forgets what no rule reads any more, at most `p_batch` rows of each table per run. Run by
-- pg_cron every 10 minutes when the extension is there, else by the outbox sweep.
create or replace function chamada.cleanup(p_now bigint, p_batch integer default 5000)
returns integer
language plpgsql
set search_path = ''
as $$
declare
    gone integer := 0;
    n    integer;
begin
    update chamada.housekeeping set cleaned_at_ms = p_now;
    delete from chamada.limits where expires_at_ms <= p_now and key in (
        select key from chamada.limits where expires_at_ms <= p_now limit p_batch);
    get diagnostics n = row_count; gone := gone + n;
    delete from chamada.idempotency where expires_at_ms <= p_now and key in (
        select key from chamada.idempotency where expires_at_ms <= p_now limit p_batch);
    get diagnostics n = row_count; gone := gone + n;
    delete from chamada.outbox where expires_at_ms <= p_now and id in (
        select id from chamada.outbox where expires_at_ms <= p_now limit p_batch);
    get diagnostics n = row_count; gone := gone + n;
    delete from chamada.calls where expires_at_ms <= p_now and call_id in (
        select call_id from chamada.calls where expires_at_ms <= p_now limit p_batch);
    get diagnostics n = row_count; gone := gone + n;
    return gone;
end;
$$;

-- Row Level Security on every table, and no policy: a role that is not the tables' owner
-- (Supabase's `anon` and `authenticated`, whatever grants they get) reads and writes nothing.
alter table chamada.limits enable row level security;
alter table chamada.idempotency enable row level security;
alter table chamada.outbox enable row level security;
alter table chamada.calls enable row level security;
alter table chamada.housekeeping enable row level security;
-- Nothing in the schema for PUBLIC (functions are executable by PUBLIC by default).
revoke all on schema chamada from public;
revoke all on all tables in schema chamada from public;
revoke all on all functions in schema chamada from public;
do $$
declare
    role_name text;
begin
    foreach role_name in array array['anon', 'authenticated'] loop
        if exists (select 1 from pg_roles where rolname = role_name) then
            execute format('revoke all on schema chamada from %I', role_name);
            execute format('revoke all on all tables in schema chamada from %I', role_name);
            execute format('revoke all on all functions in schema chamada from %I', role_name);
        end if;
    end loop;
end;
$$;

-- The cleanup every 10 minutes with pg_cron, where it is installed (Supabase: Database →
-- Extensions → pg_cron). Without it the outbox sweep cleans up (chamada.outbox_due).
do $$
begin
    if exists (select 1 from pg_extension where extname = 'pg_cron') then
        perform cron.schedule('chamada-cleanup', '*/10 * * * *',
            'select chamada.cleanup((extract(epoch from clock_timestamp()) * 1000)::bigint)');
    end if;
end;
$$;
