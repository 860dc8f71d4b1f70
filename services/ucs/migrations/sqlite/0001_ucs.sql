-- The UCS read model. Every row is derived from the topics (see docs/ARCHITECTURE.md), so
-- `switchboard ucs rebuild` can recreate all of it. Times are epoch milliseconds taken from
-- the events, never from the clock, so a rebuild equals the live database.

-- Where the projector is in each partition: written in the same transaction as its rows.
CREATE TABLE projector_offsets (
    topic TEXT NOT NULL,
    partition_id BIGINT NOT NULL,
    next_offset BIGINT NOT NULL,
    PRIMARY KEY (topic, partition_id)
);

-- Records the projector could not use, with the reason (kept, never silently dropped).
CREATE TABLE skipped_records (
    topic TEXT NOT NULL,
    partition_id BIGINT NOT NULL,
    record_offset BIGINT NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (topic, partition_id, record_offset)
);

CREATE TABLE contacts (
    id TEXT PRIMARY KEY,
    display_name TEXT,
    attributes TEXT NOT NULL,
    merged_into TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE contact_identities (
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (kind, value)
);
CREATE INDEX contact_identities_contact ON contact_identities (contact_id);

CREATE TABLE interactions (
    id TEXT PRIMARY KEY,
    media_type TEXT,
    origin TEXT,
    status TEXT NOT NULL,
    queue TEXT,
    agent_id TEXT,
    contact_id TEXT,
    subject TEXT,
    priority BIGINT NOT NULL,
    properties TEXT NOT NULL,
    content_ref TEXT,
    parent_id TEXT,
    submitted_by TEXT,
    created_at BIGINT,
    updated_at BIGINT NOT NULL,
    stopped_at BIGINT,
    stop_reason TEXT,
    event_count BIGINT NOT NULL
);
CREATE INDEX interactions_contact ON interactions (contact_id, created_at);
CREATE INDEX interactions_parent ON interactions (parent_id);

-- The queue and agent trail: one row per interaction event, in log order.
CREATE TABLE interaction_history (
    event_id TEXT PRIMARY KEY,
    interaction_id TEXT NOT NULL,
    log_partition BIGINT NOT NULL,
    log_offset BIGINT NOT NULL,
    occurred_at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    queue TEXT,
    agent_id TEXT,
    causation_id TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX interaction_history_interaction ON interaction_history (interaction_id, log_offset);

CREATE TABLE interaction_contents (
    interaction_id TEXT NOT NULL,
    part_index BIGINT NOT NULL,
    role TEXT NOT NULL,
    mime_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    blob_ref TEXT,
    filename TEXT,
    text TEXT,
    PRIMARY KEY (interaction_id, part_index)
);

CREATE TABLE chat_transcript (
    event_id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    log_offset BIGINT NOT NULL,
    occurred_at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    participant_id TEXT,
    role TEXT,
    text TEXT,
    visibility TEXT
);
CREATE INDEX chat_transcript_session ON chat_transcript (session_id, log_offset);

CREATE TABLE notes (
    id TEXT PRIMARY KEY,
    contact_id TEXT,
    interaction_id TEXT,
    author TEXT NOT NULL,
    text TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX notes_contact ON notes (contact_id);
CREATE INDEX notes_interaction ON notes (interaction_id);

CREATE TABLE categories (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    parent_id TEXT,
    updated_at BIGINT NOT NULL
);

CREATE TABLE standard_responses (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    category_id TEXT,
    subject TEXT,
    body_text TEXT NOT NULL,
    body_html TEXT,
    media TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    place TEXT,
    skills TEXT NOT NULL,
    capacity TEXT NOT NULL,
    ready_media TEXT NOT NULL,
    reason TEXT,
    updated_at BIGINT NOT NULL,
    event_count BIGINT NOT NULL
);
