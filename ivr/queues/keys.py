"""Every Redis key the product uses, named in one place.

The Lua scripts build the same names from the prefix with ``k(...)`` (``lua/lib/prelude.lua``);
``tests/unit/test_keys_lua.py`` checks that every key a script builds has the shape of one named here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    prefix: str = "ivr"

    def _k(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    # calls
    def call(self, call_id: str) -> str:
        return self._k("call", call_id)

    @property
    def active_calls(self) -> str:
        return self._k("calls", "active")

    # the call list (GET /api/v1/calls): ZSETs of call ids scored by ``started_at`` (epoch ms), written
    # by the scripts that start, answer and end calls (``index_call`` in ``lua/lib/prelude.lua``) and
    # trimmed there to the calls whose record may still exist (``routing.call_ttl_s`` plus a day)
    @property
    def calls_index(self) -> str:
        """ZSET of every call id by when it started (ms): the call list, newest first."""
        return self._k("calls", "started")

    def agent_calls(self, agent_id: str) -> str:
        """ZSET of the ids of the calls agent ``agent_id`` answered (also before a transfer), by start (ms)."""
        return self._k("agent", agent_id, "calls")

    def queue_calls(self, queue: str) -> str:
        """ZSET of the ids of the calls that waited in ``queue`` (the last queue of each), by start (ms)."""
        return self._k("queue", queue, "calls")

    # recordings (lua/scripts/recording_saved.lua; docs/recording.md)
    def recording(self, recording_id: str) -> str:
        """HASH of one recording ``R<20 hex>``: call_id, started_at, ended_at, duration_ms, format,
        channels, clock_rate, bytes, sha256, key (in the store), store, agents (JSON), agent_id, queue,
        pauses (JSON ``[[start_ms, end_ms]...]``), ivr, delete_after, version."""
        return self._k("rec", recording_id)

    @property
    def recordings_index(self) -> str:
        """ZSET of every recording id by ``started_at`` (ms)."""
        return self._k("recs")

    @property
    def recordings_expiry(self) -> str:
        """ZSET of recording ids by ``delete_after`` (ms): what retention deletes next."""
        return self._k("recs", "expiry")

    def agent_recordings(self, agent_id: str) -> str:
        """ZSET of the recordings agent ``agent_id`` is heard on, by ``started_at``."""
        return self._k("agent", agent_id, "recs")

    def queue_recordings(self, queue: str) -> str:
        """ZSET of the recordings of calls answered from ``queue``, by ``started_at``."""
        return self._k("queue", queue, "recs")

    @property
    def transcribe_jobs(self) -> str:
        """LIST of recording ids waiting to be transcribed (LPUSH by recording_saved; the transcriber
        takes from the right)."""
        return self._k("transcribe", "jobs")

    @property
    def playback_secret(self) -> str:
        """STRING: the key every API instance signs recording play links with (random, made once)."""
        return self._k("secrets", "playback")

    @property
    def audit(self) -> str:
        """STREAM of the audit trail: who listened to, downloaded, deleted or supervised what
        (fields at, action, by, role, target, call_id, detail)."""
        return self._k("audit")

    def mailbox(self, mailbox: str) -> str:
        """LIST of voicemail entries (JSON, newest first, capped) left in ``mailbox``."""
        return self._k("mailbox", mailbox, "voicemail")

    # complaint cases (lua/lib/cases.lua; the status machine is ivr.core.case_states)
    def case(self, case_id: str) -> str:
        """HASH of one complaint case ``CS<n>``: tier, status, reason, customer, owner, the times
        (``opened_at``, ``due_at``, ``contacted_at``... epoch ms, "" when not yet), ``calls`` (JSON
        list of linked call ids, newest last), ``overdue``, ``first_contact_ms``, ``version``; while a
        follow-up task is out ``task_agent``, ``task_at``, ``task_expires``; ``task_call`` the call of
        the last accepted task."""
        return self._k("case", case_id)

    def case_notes(self, case_id: str) -> str:
        """LIST of the case's notes (JSON ``{at, by, text}``), newest first, capped."""
        return self._k("case", case_id, "notes")

    @property
    def case_seq(self) -> str:
        """Counter (INCR) giving the number of the next case id (``CS<n>``)."""
        return self._k("cases", "seq")

    @property
    def cases_index(self) -> str:
        """ZSET of every case id by when it was opened (ms): the case list, newest first."""
        return self._k("cases", "index")

    @property
    def cases_due(self) -> str:
        """ZSET of the ids of the cases waiting for contact (open or reopened) by their due time (ms);
        a case leaves it when contacted, resolved or closed, and comes back on reopen."""
        return self._k("cases", "due")

    @property
    def cases_closed(self) -> str:
        """ZSET of the ids of closed cases by when they were closed (ms): the retention purge
        (``case_purge.lua``, ``cases.retention_days``) deletes those older than the retention."""
        return self._k("cases", "closed")

    @property
    def cases_followups(self) -> str:
        """ZSET of the ids of closed cases whose follow-up (回访) is scheduled, by when it is due (ms):
        the work list of ``case_followups.lua`` (a started one leaves it; a retry comes back)."""
        return self._k("cases", "followups")

    @property
    def cases_deadlines(self) -> str:
        """ZSET of the :attr:`cases_due` cases whose deadline was not yet marked overdue, by due time
        (ms): the work list of the deadline scan (``case_deadlines.lua``), which takes each out once."""
        return self._k("cases", "deadlines")

    @property
    def cases_counts(self) -> str:
        """HASH of case counters kept by the status setter: ``status:<status>`` (cases in each
        status), ``open:<tier>`` (open and reopened per tier), ``overdue`` (open or reopened cases
        the deadline scan marked overdue)."""
        return self._k("cases", "counts")

    @property
    def cases_tasks(self) -> str:
        """ZSET of the ids of the cases whose follow-up task is out to an agent, by when it expires (ms):
        the offer scan (``case_offer_tasks.lua``) gives expired ones back. The case hash holds
        ``task_agent``, ``task_at``, ``task_expires`` meanwhile, the agent hash ``task`` (the case id)."""
        return self._k("cases", "tasks")

    def case_skip(self, case_id: str) -> str:
        """ZSET agent id -> until when (ms) the agent is not offered the case's follow-up task again
        (it declined it or let it expire); expires by itself."""
        return self._k("case", case_id, "skip")

    def customer_cases(self, digest: str) -> str:
        """ZSET of the ids of one customer's unfinished cases (open, contacted, reopened) by when they
        were opened (ms), the newest 20 kept: a repeat caller is recognised by them. ``digest`` is the
        SHA-1 (hex) of the customer's number (``redis.sha1hex`` in ``lua/lib/cases.lua``): never a phone
        number in a key name. Kept in step by the case status setter; gone once empty."""
        return self._k("customer", digest, "cases")

    def agent_cases(self, agent_id: str) -> str:
        """ZSET of the ids of the cases agent ``agent_id`` owns, by when they were opened (ms)."""
        return self._k("agent", agent_id, "cases")

    # callbacks
    def callback(self, callback_id: str) -> str:
        """HASH of one callback request (id, call_id, queue, number, journey, state, place...)."""
        return self._k("callback", callback_id)

    def callbacks(self, queue: str) -> str:
        """ZSET of pending callback ids of ``queue``, by the place the caller keeps (the waiting score)."""
        return self._k("queue", queue, "callbacks")

    @property
    def callbacks_due(self) -> str:
        """ZSET of callback ids (their call records) waiting for a retry, by when it is due (ms);
        housekeeping puts them back in their queue at their place (see ``lua/lib/callbacks.lua``)."""
        return self._k("callbacks", "due")

    def callback_by_ani(self, queue: str, ani: str) -> str:
        """The open callback id of the caller ``ani`` in ``queue``: a redial takes its place."""
        return self._k("queue", queue, "callback_ani", ani)

    def resume(self, queue: str, ani: str) -> str:
        """HASH {priority, queued_at, call_id} of the place caller ``ani`` had in ``queue`` when it
        hung up while waiting; expires after ``callbacks.resume_window_s`` (redial resume)."""
        return self._k("queue", queue, "resume", ani)

    # queues
    @property
    def queues(self) -> str:
        """HASH queue name -> the required skills ("+"-joined) of the last caller queued there."""
        return self._k("queues")

    def waiting(self, queue: str) -> str:
        """ZSET of waiting call ids, ordered by priority then enqueue time."""
        return self._k("queue", queue, "waiting")

    def route_waiting(self, route: str) -> str:
        """ZSET of the call ids waiting for agents that meet ``route`` (``"<min proficiency>/<language
        or *>/<skill>+<skill>..."``, skills sorted), scored like :meth:`waiting`; see
        :mod:`ivr.queues.routing`."""
        return self._k("route", route, "waiting")

    def skill_routes(self, skill: str) -> str:
        """ZSET of the routes that have waiting callers and whose first (sorted) skill is ``skill``,
        scored by their head caller (the best waiting score in the route)."""
        return self._k("skill", skill, "routes")

    def round_robin(self, queue: str) -> str:
        """The id of the agent the queue's round robin gave the last caller to."""
        return self._k("queue", queue, "rr")

    @property
    def escalations(self) -> str:
        """ZSET of waiting call ids by when their next escalation step is due (ms)."""
        return self._k("escalations")

    def queue_stats(self, queue: str) -> str:
        """HASH of the queue's recent history for wait estimates (see :mod:`ivr.queues.estimate`):
        ``gap_ms`` (average time a caller spent at the head before an agent took it), ``last_departure``
        (ms), ``departures``, ``aht_ms`` (average handle time: talk + wrap-up), ``handled``."""
        return self._k("queue", queue, "stats")

    def queue_interval(self, queue: str, start_s: int) -> str:
        """HASH of the queue's counters for the statistics interval starting at ``start_s`` (epoch
        seconds): offered, answered, waits, abandons, handle time... (see :mod:`ivr.queues.stats`);
        expires ``routing.stats_keep_days`` after the interval began."""
        return self._k("queue", queue, "interval", str(start_s))

    def queue_intervals(self, queue: str) -> str:
        """ZSET of the start (epoch seconds, also the score) of every interval the queue has counters for."""
        return self._k("queue", queue, "intervals")

    # agents
    @property
    def agents(self) -> str:
        return self._k("agents")

    def agent(self, agent_id: str) -> str:
        return self._k("agent", agent_id)

    def agent_token(self, agent_id: str) -> str:
        """The SHA-256 of the token of an agent made over the API (its entry in :attr:`tokens`)."""
        return self._k("agent", agent_id, "token")

    @property
    def sip_credentials(self) -> str:
        """HASH agent id -> JSON {realm, ha1}: the digest HA1 of the SIP password an admin set for the
        agent's registering phone (never the password; a secret nonetheless, see ivr/core/sip_auth.py)."""
        return self._k("sip", "credentials")

    @property
    def phones_registered(self) -> str:
        """SET of the agents whose phone the last poll of the edge found registered; the agent hash
        holds ``phone_contacts`` and ``phone_until`` (ms: the registration counts until then)."""
        return self._k("phones", "registered")

    @property
    def phones_sources(self) -> str:
        """ZSET of the pollers of the edge(s) (``ivr run``'s supervisor, ``ivr phones`` next to each
        edge) by when their last picture goes stale (ms)."""
        return self._k("phones", "sources")

    def phones_source(self, name: str) -> str:
        """HASH agent id -> live contacts: the last picture poller ``name`` took of its edge."""
        return self._k("phones", "source", name)

    def agent_desktop(self, agent_id: str) -> str:
        """Present while the agent has a desktop WebSocket open (TTL refreshed by the API)."""
        return self._k("agent", agent_id, "desktop")

    def idle(self, skill: str) -> str:
        """ZSET of available agents with ``skill``, by time they became available (longest idle first)."""
        return self._k("skill", skill, "idle")

    def idle_level(self, skill: str, level: int) -> str:
        """ZSET of available agents with ``skill`` at proficiency ``level`` (1-5), by time they became
        available."""
        return self._k("skill", skill, "idle", str(level))

    def ready(self, skill: str) -> str:
        """ZSET (all scores 0) of available agents with ``skill``, in id order (round robin)."""
        return self._k("skill", skill, "ready")

    def staffed(self, skill: str) -> str:
        """SET of the agents with ``skill`` that are logged in (any state but offline)."""
        return self._k("skill", skill, "staffed")

    @property
    def wrapup(self) -> str:
        """ZSET of agents in wrap-up, by the time it ends."""
        return self._k("wrapup")

    # workers
    @property
    def workers(self) -> str:
        """SET of every worker name that ever registered (for the reaper)."""
        return self._k("workers")

    def lease(self, name: str) -> str:
        return self._k("lease", name)

    def worker_inbox(self, worker: str) -> str:
        return self._k("worker", worker, "inbox")

    def worker_calls(self, worker: str) -> str:
        return self._k("worker", worker, "calls")

    def worker_alive(self, worker: str) -> str:
        return self._k("worker", worker, "alive")

    def worker_slots(self, worker: str) -> str:
        """Calls (caller + agent leg pairs) the worker can hold, 0 while draining; refreshed with its
        heartbeat. Callbacks go to a live worker with a free slot."""
        return self._k("worker", worker, "slots")

    # screen-pop acknowledgements and events
    def command_reply(self, command_id: str) -> str:
        """LIST holding the worker's reply (JSON) to command ``command_id``; expires after a minute."""
        return self._k("command", command_id, "reply")

    def offer_ack(self, offer_id: str) -> str:
        return self._k("offer", offer_id, "ack")

    def originate_request(self, digest: str) -> str:
        """STRING "<call id> <sha256 of the request>" of a click-to-dial request, by a SHA-256 of the
        user and its ``Idempotency-Key`` (a retry gets the same call; expires with the key's window)."""
        return self._k("originate", digest)

    @property
    def events(self) -> str:
        return self._k("events")

    # tokens
    @property
    def tokens(self) -> str:
        """HASH sha256(token) -> JSON {user id, role}."""
        return self._k("tokens")

    # dial plans (status reported by the workers' watchers; the version archive is on disk)
    @property
    def dialplans(self) -> str:
        """SET of the plan ids (file stems) any worker ever reported."""
        return self._k("dialplans")

    def dialplan_active(self, plan: str) -> str:
        """HASH worker -> JSON {version, name, file, numbers, at}: the version each worker runs."""
        return self._k("dialplan", plan, "active")

    def dialplan_errors(self, plan: str) -> str:
        """HASH worker -> JSON {code, message, file, version, running, at}: why a worker's last look
        at the plan file did not load it (absent when it loaded)."""
        return self._k("dialplan", plan, "errors")

    # CRM connector (ivr/cti/crm.py): never a phone or account number in a key name
    def crm_cache(self, digest: str) -> str:
        """STRING (JSON) of the records one CRM request found, ``digest`` being the SHA-256 of the
        resolved request (lookup, method, URL, body); expires after ``crm.cache_ttl_s``."""
        return self._k("crm", "cache", digest)

    def crm_warming(self, digest: str) -> str:
        """Present while one API instance fetches the request ``digest`` ahead of the pop (the others
        leave it to that one)."""
        return self._k("crm", "warming", digest)

    # webhooks (ivr/queues/outbox.py, lua/scripts/outbox_*.lua)
    def webhook_delivery(self, delivery_id: str) -> str:
        """HASH of one delivery of one event to one endpoint (``<endpoint>.<event id>``): body, attempts,
        state (pending, dead), last error and status, times."""
        return self._k("webhook", delivery_id)

    def webhook_queue(self, endpoint: str) -> str:
        """ZSET of the endpoint's pending delivery ids, in event order (the score comes from the event id)."""
        return self._k("webhooks", endpoint, "queue")

    def webhook_inflight(self, endpoint: str) -> str:
        """ZSET of the endpoint's deliveries under way, by when their lease expires (ms): past that,
        the instance delivering it is taken for dead and the delivery is claimable again."""
        return self._k("webhooks", endpoint, "inflight")

    def webhook_dead(self, endpoint: str) -> str:
        """ZSET of the endpoint's dead letters, by when they died (ms)."""
        return self._k("webhooks", endpoint, "dead")

    def webhook_endpoint(self, endpoint: str) -> str:
        """HASH of the endpoint's state: failures in a row, paused_until (ms, the backoff), delivered
        and dead counters, last success / failure times and last error."""
        return self._k("webhooks", endpoint, "state")

    # outbound campaigns (lua/lib/campaigns.lua; the state machines are ivr.core.campaign_states)
    def campaign(self, campaign_id: str) -> str:
        """HASH of campaign ``CP<n>``: name, plan, queue, caller_id, pacing / window / retries (JSON),
        ring_s, state, times, the token bucket (``tokens``, ``tokens_at``), ``zones`` (JSON list of the
        records' time zones, "" = the campaign's), ``records`` (the last record number) and the
        counters ``count:<record state>``."""
        return self._k("campaign", campaign_id)

    def campaign_record(self, campaign_id: str, n: str) -> str:
        """HASH of record ``<campaign>:<n>``: number, name, tz, zone, variables (JSON), state,
        attempts, last_outcome, last_reason, last_call_id, retry_at, result (JSON), times."""
        return self._k("campaign", campaign_id, "record", n)

    def campaign_records(self, campaign_id: str) -> str:
        """ZSET of the campaign's record numbers (score = the number): every record, in upload order."""
        return self._k("campaign", campaign_id, "records")

    def campaign_due(self, campaign_id: str, zone: str) -> str:
        """ZSET of the waiting (pending, retry) records of time zone number ``zone`` of the campaign,
        by when they may be dialled (ms: added_at, or retry_at)."""
        return self._k("campaign", campaign_id, "due", zone)

    def campaign_numbers(self, campaign_id: str) -> str:
        """SET of the digests (SHA-1) of the campaign's numbers: a number is in a campaign once."""
        return self._k("campaign", campaign_id, "numbers")

    @property
    def campaign_seq(self) -> str:
        """Counter (INCR) giving the number of the next campaign id (``CP<n>``)."""
        return self._k("campaigns", "seq")

    @property
    def campaigns_index(self) -> str:
        """ZSET of every campaign id by when it was created (ms)."""
        return self._k("campaigns", "index")

    @property
    def campaigns_running(self) -> str:
        """SET of the ids of the running campaigns: what the dialler's tick looks at."""
        return self._k("campaigns", "running")

    @property
    def campaigns_closing(self) -> str:
        """SET of stopped campaigns whose waiting records the tick is still cancelling."""
        return self._k("campaigns", "closing")

    @property
    def campaigns_progress(self) -> str:
        """SET of campaigns whose counts changed since their last ``campaign.progress`` (sent at most
        once a second each)."""
        return self._k("campaigns", "progress")

    @property
    def dnc(self) -> str:
        """SET of the do-not-call list: SHA-1 digests of normalised numbers (never a number itself)."""
        return self._k("dnc")

    # transcripts and quality checks (lua/lib/quality.lua; ivr.queues.quality; docs/quality.md)
    def transcribe_working(self, consumer: str) -> str:
        """LIST of the recording ids transcriber ``consumer`` took from ``transcribe_jobs`` (BLMOVE) and
        has not finished: put back on the jobs list when that consumer starts again."""
        return self._k("transcribe", "working", consumer)

    @property
    def transcribe_attempts(self) -> str:
        """HASH recording id -> how often a transcriber took it (a decode that kills the process
        must not come back for ever); the field goes when the job ends."""
        return self._k("transcribe", "attempts")

    @property
    def transcribe_stats(self) -> str:
        """HASH of the transcriber's counters: done, failed, skipped, audio_ms, decode_ms, lag_ms_sum,
        lag_ms_last, lag_ms_max, at (ms of the last job)."""
        return self._k("transcribe", "stats")

    def transcript(self, recording_id: str) -> str:
        """HASH of a recording's transcript: status (done|failed|skipped), call_id, agent_id, queue,
        started_at, duration_ms, language, model, text_caller, text_agent (normalised words),
        words_caller, words_agent (JSON ``[[word, start_s, end_s, conf]...]``), terms (JSON: the
        indexed words), decode_ms, decoded_at, error, version."""
        return self._k("transcript", recording_id)

    @property
    def transcripts_index(self) -> str:
        """ZSET of the ids of transcribed recordings by ``started_at`` (ms)."""
        return self._k("transcripts")

    def agent_transcripts(self, agent_id: str) -> str:
        """ZSET of the transcribed recordings of agent ``agent_id`` (the record's first agent) by start."""
        return self._k("agent", agent_id, "transcripts")

    def queue_transcripts(self, queue: str) -> str:
        """ZSET of the transcribed recordings of calls answered from ``queue`` by start."""
        return self._k("queue", queue, "transcripts")

    def transcript_term(self, term: str) -> str:
        """ZSET of the recordings whose transcript contains the word ``term`` (normalised), by start."""
        return self._k("tx", "term", term)

    def quality(self, recording_id: str) -> str:
        """HASH of a recording's quality: score (0-100), flags (JSON names), checks (JSON), rules (the
        rule set's name), agent_id, queue, started_at, scored_at, reviews, review_sum, review_last."""
        return self._k("quality", recording_id)

    def quality_reviews(self, recording_id: str) -> str:
        """LIST of the manual reviews of a recording (JSON ``{at, by, role, score, comment}``), newest first."""
        return self._k("quality", recording_id, "reviews")

    # --- alerts (ivr.alerts, docs/alerts.md) -------------------------------------------------------------
    @property
    def alerts_active(self) -> str:
        """HASH of the alerts raised and not yet cleared: ``<rule>|<queue>`` -> the alert's JSON (one per
        rule and queue: the deduplication; ``queue`` "" for a system rule)."""
        return self._k("alerts", "active")

    @property
    def alerts_pending(self) -> str:
        """HASH ``<rule>|<queue>`` -> epoch ms since when the condition to raise (inactive) or to clear
        (active) holds: the hysteresis timers, kept in Redis so that a new evaluator goes on with them."""
        return self._k("alerts", "pending")

    @property
    def alerts_history(self) -> str:
        """ZSET of alert ids by raised_at (epoch ms), kept ``alerts.history_days`` and capped."""
        return self._k("alerts", "history")

    @property
    def alerts_seq(self) -> str:
        """STRING counter of alert ids."""
        return self._k("alerts", "seq")

    @property
    def alerts_lease(self) -> str:
        """STRING: the API instance that evaluates the rules (expires unless renewed)."""
        return self._k("alerts", "lease")

    def alert(self, alert_id: str) -> str:
        """STRING: one alert's JSON (raised, acknowledged, cleared), expiring with the history."""
        return self._k("alert", alert_id)

    # --- agent statistics (per-agent figures by interval) --------------------------------
    def agent_interval(self, agent_id: str, start_s: int) -> str:
        """HASH of agent ``agent_id``'s figures for the statistics interval starting at ``start_s``
        (epoch seconds; the queues' ``routing.stats_interval_s``): ``ms_<state>`` (ms spent in each
        state but offline, split at interval boundaries), ``handled``, ``handle_ms``, ``talk_ms``,
        ``hold_ms`` (see :mod:`ivr.queues.agent_stats`); expires 35 days (``routing.stats_keep_days``
        if shorter) after the interval began."""
        return self._k("agent", agent_id, "interval", str(start_s))

    def agent_intervals(self, agent_id: str) -> str:
        """ZSET of the start (epoch seconds, also the score) of every interval the agent has figures for."""
        return self._k("agent", agent_id, "intervals")
