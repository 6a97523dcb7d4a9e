"""Named, append-only schema migrations. Never edit one that has shipped: add the next."""

MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_initial",
        """
        CREATE TABLE sources (
            sha256 VARCHAR PRIMARY KEY,
            uri VARCHAR NOT NULL,
            format VARCHAR NOT NULL,
            parser_version VARCHAR NOT NULL,
            size_bytes BIGINT,
            records INTEGER,
            added INTEGER,
            duplicates INTEGER,
            rejected INTEGER,
            ingested_at TIMESTAMP NOT NULL
        );
        CREATE TABLE trajectories (
            id VARCHAR PRIMARY KEY,
            source_sha256 VARCHAR NOT NULL,
            source_uri VARCHAR NOT NULL,
            record_location VARCHAR,
            external_id VARCHAR,
            task_id VARCHAR,
            task_text VARCHAR,
            agent VARCHAR,
            model VARCHAR,
            started_at VARCHAR,
            ended_at VARCHAR,
            outcome VARCHAR NOT NULL,
            reward DOUBLE,
            cost_usd DOUBLE,
            tokens_in BIGINT,
            tokens_out BIGINT,
            playbook VARCHAR,
            playbook_version INTEGER,
            n_steps INTEGER,
            metadata JSON,
            raw VARCHAR,  -- the record's JSON text as read (redacted); VARCHAR: no re-validation on insert
            ingested_at TIMESTAMP NOT NULL
        );
        CREATE TABLE steps (
            trajectory_id VARCHAR NOT NULL,
            seq INTEGER NOT NULL,
            role VARCHAR NOT NULL,
            name VARCHAR,
            text VARCHAR,
            reasoning VARCHAR,
            n_tool_calls INTEGER
        );  -- no key: ingest writes a run's steps only with the run, whose id is the key
        CREATE TABLE tool_calls (
            trajectory_id VARCHAR NOT NULL,
            step_seq INTEGER NOT NULL,
            idx INTEGER NOT NULL,
            call_id VARCHAR,
            name VARCHAR NOT NULL,
            arguments JSON,
            arguments_raw VARCHAR
        );
        CREATE TABLE tool_results (
            trajectory_id VARCHAR NOT NULL,
            step_seq INTEGER NOT NULL,
            call_id VARCHAR,
            name VARCHAR,
            content VARCHAR,
            is_error BOOLEAN NOT NULL
        );
        CREATE TABLE rejects (
            source_sha256 VARCHAR NOT NULL,
            source_uri VARCHAR NOT NULL,
            location VARCHAR NOT NULL,
            line INTEGER,
            reader VARCHAR,
            reason VARCHAR NOT NULL,
            raw BLOB,
            rejected_at TIMESTAMP NOT NULL,
            PRIMARY KEY (source_sha256, location)
        );
        CREATE TABLE insights (
            playbook VARCHAR NOT NULL,
            key VARCHAR NOT NULL,
            version INTEGER NOT NULL,
            reflector VARCHAR NOT NULL,
            section VARCHAR NOT NULL,
            text VARCHAR NOT NULL,
            support VARCHAR,
            evidence JSON,
            created_at TIMESTAMP NOT NULL
        );
        CREATE TABLE distilled_runs (
            playbook VARCHAR NOT NULL,
            trajectory_id VARCHAR NOT NULL,
            version INTEGER,
            distilled_at TIMESTAMP NOT NULL,
            PRIMARY KEY (playbook, trajectory_id)
        );
        CREATE TABLE exposures (
            trajectory_id VARCHAR NOT NULL,
            playbook VARCHAR NOT NULL,
            version INTEGER NOT NULL,
            item_id VARCHAR NOT NULL,
            cited BOOLEAN NOT NULL,
            recorded_at TIMESTAMP NOT NULL,
            PRIMARY KEY (trajectory_id, playbook, item_id)
        );
        CREATE TABLE playbook_versions (
            playbook VARCHAR NOT NULL,
            version INTEGER NOT NULL,
            parent INTEGER,
            content_hash VARCHAR NOT NULL,
            operations JSON NOT NULL,
            summary VARCHAR NOT NULL,
            content JSON NOT NULL,
            git_commit VARCHAR,
            created_at TIMESTAMP NOT NULL,
            PRIMARY KEY (playbook, version)
        );
        """,
    ),
    (
        "0002_scores_and_redactions",
        """
        CREATE TABLE scores (
            trajectory_id VARCHAR NOT NULL,
            scorer VARCHAR NOT NULL,        -- e.g. tau2:db_check, inspect:match, judge
            key VARCHAR NOT NULL,           -- what was scored ('' for a scorer's single value)
            value_num DOUBLE,
            value_str VARCHAR,
            explanation VARCHAR,
            source VARCHAR NOT NULL,        -- format | outcomes-file | judge
            PRIMARY KEY (trajectory_id, scorer, key)
        );
        CREATE TABLE redactions (
            source_sha256 VARCHAR NOT NULL,
            location VARCHAR NOT NULL,      -- the record: line N / index N
            detector VARCHAR NOT NULL,
            count INTEGER NOT NULL,
            PRIMARY KEY (source_sha256, location, detector)
        );
        """,
    ),
    (
        "0003_llm_distillation",
        """
        CREATE TABLE llm_cache (
            key VARCHAR PRIMARY KEY,        -- sha256 of the canonical request: model, messages, parameters, schema
            model VARCHAR NOT NULL,
            purpose VARCHAR NOT NULL,       -- reflect-success | reflect-failure | reflect-contrast | curate | judge
            response VARCHAR NOT NULL,      -- the reply that passed validation
            tokens_in INTEGER,
            tokens_out INTEGER,
            cost_usd DOUBLE,
            created_at TIMESTAMP NOT NULL
        );
        CREATE TABLE llm_calls (
            command_id VARCHAR NOT NULL,    -- one per command run (memkit costs groups by it)
            seq INTEGER NOT NULL,
            command VARCHAR NOT NULL,
            model VARCHAR NOT NULL,
            purpose VARCHAR NOT NULL,
            prompt_hash VARCHAR NOT NULL,
            cache_hit BOOLEAN NOT NULL,
            status VARCHAR NOT NULL,        -- ok | invalid | error
            error VARCHAR,
            tokens_in INTEGER,
            tokens_out INTEGER,
            cost_usd DOUBLE,
            latency_ms INTEGER,
            created_at TIMESTAMP NOT NULL,
            PRIMARY KEY (command_id, seq)
        );
        CREATE TABLE reflections (
            playbook VARCHAR NOT NULL,
            kind VARCHAR NOT NULL,          -- success | failure | contrast
            trajectory_ids JSON NOT NULL,
            task_id VARCHAR,
            reflector VARCHAR NOT NULL,     -- the model
            prompt_hash VARCHAR NOT NULL,
            status VARCHAR NOT NULL,        -- ok | failed (the runs are reflected on again next distill)
            output JSON,
            error VARCHAR,
            command_id VARCHAR,
            created_at TIMESTAMP NOT NULL
        );
        CREATE TABLE item_tags (
            trajectory_id VARCHAR NOT NULL,
            playbook VARCHAR NOT NULL,
            item_id VARCHAR NOT NULL,
            tag VARCHAR NOT NULL,           -- helpful | harmful | neutral
            reason VARCHAR,
            reflector VARCHAR NOT NULL,
            created_at TIMESTAMP NOT NULL,
            PRIMARY KEY (trajectory_id, playbook, item_id)
        );
        CREATE TABLE curation_pairs (
            playbook VARCHAR NOT NULL,
            a VARCHAR NOT NULL,             -- item id, or text:HASH for a candidate lesson
            b VARCHAR NOT NULL,
            decision VARCHAR NOT NULL,      -- separate
            similarity DOUBLE,
            decided_by VARCHAR,
            decided_at TIMESTAMP NOT NULL,
            PRIMARY KEY (playbook, a, b)
        );
        """,
    ),
    (
        "0004_playbook_pointers",
        """
        CREATE TABLE playbook_pointers (
            playbook VARCHAR NOT NULL,
            pointer VARCHAR NOT NULL,   -- 'stable': the version exports use by default
            version INTEGER NOT NULL,
            reason VARCHAR,
            set_at TIMESTAMP NOT NULL,
            PRIMARY KEY (playbook, pointer)
        );
        """,
    ),
    (
        "0005_redaction_paths",
        """
        -- Where in the record each detector fired (e.g. traj[3].content), never the secret itself.
        ALTER TABLE redactions ADD COLUMN paths VARCHAR[];
        """,
    ),
    (
        "0006_step_flags",
        """
        CREATE TABLE step_flags (
            trajectory_id VARCHAR NOT NULL,
            seq INTEGER NOT NULL,
            detector VARCHAR NOT NULL,      -- override | role-change | memory-write | standing-order | hidden-text | encoded | ...
            excerpt VARCHAR,
            PRIMARY KEY (trajectory_id, seq, detector)
        );
        """,
    ),
    (
        "0007_truncations",
        """
        -- What ingest cut from a run to stay within ingest.max_messages / ingest.max_run_bytes.
        -- Written with the run (so a re-ingest, which skips known runs, adds nothing).
        CREATE TABLE truncations (
            trajectory_id VARCHAR NOT NULL,
            seq INTEGER,                    -- the step (its index in the original run); NULL: the run as a whole
            what VARCHAR NOT NULL,          -- messages | text | reasoning | tool_result | arguments | raw
            limit_name VARCHAR NOT NULL,    -- max_messages | max_run_bytes
            original BIGINT NOT NULL,       -- messages (for 'messages') or bytes before
            kept BIGINT NOT NULL            -- ... and what was stored
        );  -- no key: written only with its run, whose id is the key
        """,
    ),
    (
        "0008_redaction_runs",
        """
        -- The runs made from each record whose redactions a row counts (a record may make several
        -- runs, a run may come from several records). Filled at ingest (records.Redactions.claim).
        ALTER TABLE redactions ADD COLUMN run_ids VARCHAR[];
        -- Rows written before: the runs at the record's own location; NULL where there is none
        -- (purge then falls back to that same join).
        UPDATE redactions SET run_ids = (SELECT list(t.id ORDER BY t.id) FROM trajectories t
            WHERE t.source_sha256 = redactions.source_sha256 AND t.record_location = redactions.location);
        """,
    ),
    (
        "0009_evidence_events",
        """
        -- Every verdict a run was given, never overwritten: its own (source 'trace') when an outcomes
        -- file first overrides it, then each outcomes file's. trajectories.outcome/reward hold the latest;
        -- scoring reads the latest event of each run (distill/score.py).
        CREATE TABLE outcome_events (
            trajectory_id VARCHAR NOT NULL,
            seq BIGINT NOT NULL,            -- order of recording over the whole table
            source VARCHAR NOT NULL,        -- trace | outcomes:FILE
            outcome VARCHAR NOT NULL,
            reward DOUBLE,
            detail VARCHAR,                 -- the id and value as the file gave them
            recorded_at TIMESTAMP NOT NULL
        );
        INSERT INTO outcome_events
            SELECT s.trajectory_id, row_number() OVER (ORDER BY s.trajectory_id, s.scorer), s.scorer, t.outcome,
                   t.reward, s.explanation, now()
            FROM scores s JOIN trajectories t ON t.id = s.trajectory_id WHERE s.source = 'outcomes-file';
        -- Every reflector tag ever written (item_tags keeps only the latest per run and item).
        CREATE TABLE tag_events (
            trajectory_id VARCHAR NOT NULL,
            playbook VARCHAR NOT NULL,
            item_id VARCHAR NOT NULL,
            tag VARCHAR NOT NULL,           -- helpful | harmful | neutral
            reason VARCHAR,
            reflector VARCHAR NOT NULL,
            created_at TIMESTAMP NOT NULL
        );
        INSERT INTO tag_events SELECT trajectory_id, playbook, item_id, tag, reason, reflector, created_at FROM item_tags;
        """,
    ),
    (
        "0010_contexts",
        """
        -- What each exported context file held: runs that name a context are exposed to its items only.
        CREATE TABLE contexts (
            id VARCHAR PRIMARY KEY,         -- hash of playbook, version and item ids (prompts/export.py context_id)
            playbook VARCHAR NOT NULL,
            version INTEGER NOT NULL,
            items VARCHAR[] NOT NULL,       -- the item ids the file held, sorted
            target VARCHAR,                 -- the first export that made it: agents-md, system-prompt, ...
            budget INTEGER,
            for_task VARCHAR,               -- export --for
            created_at TIMESTAMP NOT NULL
        );
        """,
    ),
    (
        "0011_run_attempt",
        """
        -- Which repeat of its task a run is (tau-bench/tau2 trial, Inspect epoch, memkit eval's arm and
        -- trial): part of the run id, kept so an export can carry it and a re-ingest finds the same id.
        ALTER TABLE trajectories ADD COLUMN attempt VARCHAR;
        """,
    ),
    (
        "0012_zstd_text",
        """
        -- The long texts (raw records, step texts, tool results) compressed with zstd: measured on the
        -- 20,000-run ingest bench, checkpoints cost less CPU than DuckDB's default string compression
        -- and the file is 60 MB instead of 86 MB. DuckDB sets compression only in CREATE TABLE, so the
        -- three tables are rebuilt (columns in their old order) and their rows copied.
        CREATE TABLE trajectories_z (
            id VARCHAR PRIMARY KEY, source_sha256 VARCHAR NOT NULL, source_uri VARCHAR NOT NULL,
            record_location VARCHAR, external_id VARCHAR, task_id VARCHAR, task_text VARCHAR, agent VARCHAR,
            model VARCHAR, started_at VARCHAR, ended_at VARCHAR, outcome VARCHAR NOT NULL, reward DOUBLE,
            cost_usd DOUBLE, tokens_in BIGINT, tokens_out BIGINT, playbook VARCHAR, playbook_version INTEGER,
            n_steps INTEGER, metadata JSON, raw VARCHAR USING COMPRESSION zstd, ingested_at TIMESTAMP NOT NULL,
            attempt VARCHAR
        );
        INSERT INTO trajectories_z BY NAME SELECT * FROM trajectories;
        DROP TABLE trajectories;
        ALTER TABLE trajectories_z RENAME TO trajectories;
        CREATE TABLE steps_z (
            trajectory_id VARCHAR NOT NULL, seq INTEGER NOT NULL, role VARCHAR NOT NULL, name VARCHAR,
            text VARCHAR USING COMPRESSION zstd, reasoning VARCHAR USING COMPRESSION zstd, n_tool_calls INTEGER
        );
        INSERT INTO steps_z BY NAME SELECT * FROM steps;
        DROP TABLE steps;
        ALTER TABLE steps_z RENAME TO steps;
        CREATE TABLE tool_results_z (
            trajectory_id VARCHAR NOT NULL, step_seq INTEGER NOT NULL, call_id VARCHAR, name VARCHAR,
            content VARCHAR USING COMPRESSION zstd, is_error BOOLEAN NOT NULL
        );
        INSERT INTO tool_results_z BY NAME SELECT * FROM tool_results;
        DROP TABLE tool_results;
        ALTER TABLE tool_results_z RENAME TO tool_results;
        """,
    ),
]
