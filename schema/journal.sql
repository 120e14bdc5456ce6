-- fwspool journal schema (generated from fwspool/journal/schema.py; do not edit by hand).
-- PRAGMA user_version = 6; page_size = 16384; auto_vacuum = INCREMENTAL; journal_mode = WAL; synchronous = FULL.

CREATE TABLE forget_requests (
	request_id INTEGER NOT NULL,
	kind TEXT NOT NULL,
	value INTEGER NOT NULL,
	forget INTEGER NOT NULL,
	requested_at TEXT NOT NULL,
	applied_at TEXT,
	PRIMARY KEY (request_id),
	CONSTRAINT forget_requests_kind CHECK (kind IN ('fw_id', 'launch_id'))
);

CREATE TABLE launch_summary (
	launch_id INTEGER NOT NULL,
	events INTEGER DEFAULT 0 NOT NULL,
	pending INTEGER DEFAULT 0 NOT NULL,
	pushed INTEGER DEFAULT 0 NOT NULL,
	superseded INTEGER DEFAULT 0 NOT NULL,
	skipped INTEGER DEFAULT 0 NOT NULL,
	stray INTEGER DEFAULT 0 NOT NULL,
	oldest_pending_at TEXT,
	last_event TEXT,
	last_event_at TEXT,
	last_event_id TEXT,
	last_run TEXT,
	last_run_at TEXT,
	last_run_id TEXT,
	completed_state TEXT,
	completed_at TEXT,
	completed_id TEXT,
	PRIMARY KEY (launch_id)
);

CREATE INDEX launch_summary_by_last_event ON launch_summary (last_event_at);

CREATE INDEX launch_summary_pending ON launch_summary (launch_id) WHERE pending > 0;

CREATE TABLE launches (
	launch_id INTEGER NOT NULL,
	fw_id INTEGER,
	launch_dir TEXT,
	learned_from TEXT NOT NULL,
	first_seen_at TEXT NOT NULL,
	terminal_at TEXT,
	forgotten_at TEXT,
	batch_job_id TEXT,
	batch_system TEXT,
	batch_gone_at TEXT,
	fw_name TEXT,
	pushed_state TEXT,
	outcome TEXT,
	outcome_detail TEXT,
	pushed_state_at TEXT,
	confirmed_at TEXT,
	held TEXT,
	history_at TEXT,
	PRIMARY KEY (launch_id),
	CONSTRAINT launches_learned_from CHECK (learned_from IN ('spool', 'fw_offline', 'registry', 'inbox')),
	CONSTRAINT launches_outcome CHECK (outcome IS NULL OR outcome IN ('running', 'completed', 'fizzled', 'killed', 'exited', 'lost', 'released', 'superseded'))
);

CREATE INDEX launches_by_first_seen ON launches (first_seen_at);

CREATE INDEX launches_by_fw ON launches (fw_id);

CREATE INDEX launches_by_outcome ON launches (outcome);

CREATE INDEX launches_by_state ON launches (pushed_state);

CREATE INDEX launches_forgotten ON launches (launch_id) WHERE forgotten_at IS NOT NULL;

CREATE TABLE meta (
	"key" TEXT NOT NULL,
	value TEXT,
	PRIMARY KEY ("key")
);

CREATE TABLE redo (
	redo_id INTEGER NOT NULL,
	created_at TEXT NOT NULL,
	write_set BLOB NOT NULL,
	PRIMARY KEY (redo_id)
);

CREATE TABLE sources (
	source_id INTEGER NOT NULL,
	path TEXT NOT NULL,
	kind TEXT NOT NULL,
	launch_id INTEGER,
	writer_id TEXT,
	dev INTEGER,
	ino INTEGER,
	fingerprint TEXT,
	committed_offset INTEGER DEFAULT 0 NOT NULL,
	content_hash TEXT,
	status TEXT DEFAULT 'active' NOT NULL,
	status_detail TEXT,
	first_seen_at TEXT NOT NULL,
	updated_at TEXT NOT NULL,
	PRIMARY KEY (source_id),
	CONSTRAINT sources_kind CHECK (kind IN ('spool', 'fw_offline', 'fw_ping', 'pointer')),
	CONSTRAINT sources_status CHECK (status IN ('active', 'torn', 'replaced', 'truncated', 'missing', 'refused', 'unreadable', 'stray')),
	UNIQUE (path),
	FOREIGN KEY(launch_id) REFERENCES launches (launch_id)
);

CREATE TABLE events (
	event_id TEXT NOT NULL,
	writer_id TEXT NOT NULL,
	seq INTEGER NOT NULL,
	launch_id INTEGER NOT NULL,
	fw_id INTEGER,
	type TEXT NOT NULL,
	occurred_at TEXT NOT NULL,
	payload TEXT NOT NULL,
	source_id INTEGER,
	source_offset INTEGER,
	ingested_at TEXT NOT NULL,
	pushed_at TEXT,
	push_outcome TEXT,
	push_detail TEXT,
	PRIMARY KEY (event_id),
	CONSTRAINT events_push_outcome CHECK (push_outcome IS NULL OR push_outcome IN ('applied', 'superseded', 'skipped', 'stray')),
	FOREIGN KEY(source_id) REFERENCES sources (source_id)
);

CREATE INDEX events_by_launch ON events (launch_id, type);

CREATE INDEX events_pending ON events (launch_id, occurred_at) WHERE pushed_at IS NULL;

CREATE TABLE quarantine (
	quarantine_id INTEGER NOT NULL,
	source_id INTEGER,
	path TEXT NOT NULL,
	"offset" INTEGER NOT NULL,
	length INTEGER NOT NULL,
	reason TEXT NOT NULL,
	bytes BLOB,
	quarantined_at TEXT NOT NULL,
	PRIMARY KEY (quarantine_id),
	CONSTRAINT quarantine_path_offset UNIQUE (path, "offset"),
	FOREIGN KEY(source_id) REFERENCES sources (source_id)
);

CREATE VIEW IF NOT EXISTS pending_events AS
SELECT e.event_id, e.launch_id, e.fw_id, e.type, e.occurred_at, e.ingested_at, e.payload
FROM events AS e JOIN launches AS l ON l.launch_id = e.launch_id
WHERE e.pushed_at IS NULL AND l.forgotten_at IS NULL
ORDER BY e.launch_id, e.occurred_at, e.event_id;

CREATE VIEW IF NOT EXISTS launch_status AS
SELECT l.launch_id, l.fw_id, l.fw_name, l.launch_dir, l.learned_from, l.first_seen_at,
       l.pushed_state, l.outcome, l.outcome_detail, l.pushed_state_at,
       l.batch_job_id, l.batch_system, l.batch_gone_at,
       s.last_event, s.last_event_at, coalesce(s.pending, 0) AS pending, s.oldest_pending_at,
       coalesce(s.pushed, 0) AS pushed, coalesce(s.superseded, 0) AS superseded,
       l.forgotten_at IS NOT NULL AS forgotten, l.forgotten_at,
       l.terminal_at, l.held, l.history_at, l.confirmed_at
FROM launches AS l LEFT JOIN launch_summary AS s ON s.launch_id = l.launch_id
ORDER BY l.launch_id;

CREATE VIEW IF NOT EXISTS quarantined AS
SELECT q.quarantine_id, q.path, q."offset", q.length, q.reason, q.quarantined_at,
       substr(CAST(q.bytes AS TEXT), 1, 80) AS preview
FROM quarantine AS q
ORDER BY q.quarantined_at, q.path, q."offset";
