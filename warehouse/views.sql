-- convoforge analyst views. {root} is the warehouse root; every stage table is a view over its
-- hive-partitioned Parquet files (<root>/<table>/run_id=<id>/part-*.parquet), so rows written by
-- a running build appear without touching this catalog.

CREATE OR REPLACE VIEW topics AS {scan:topics};
CREATE OR REPLACE VIEW openers AS {scan:openers};
-- Every attempt at a dialogue, failed and stopped ones included (nothing is deleted).
CREATE OR REPLACE VIEW dialogues AS {scan:dialogues};
-- The ledger of LLM requests; rows with status 'ok' are the response cache.
CREATE OR REPLACE VIEW llm_calls AS {scan:llm_calls};
CREATE OR REPLACE VIEW runs AS {scan:runs};

-- What passed: the latest complete attempt of each dialogue.
CREATE OR REPLACE VIEW dataset AS
SELECT * FROM dialogues
WHERE status = 'complete'
QUALIFY row_number() OVER (PARTITION BY id ORDER BY created_at DESC) = 1;

-- One row per dataset dialogue with its ancestry: opener -> subtopic -> meta-topic.
CREATE OR REPLACE VIEW lineage AS
SELECT d.id AS dialogue_id, d.sector, o.id AS opener_id, o.text AS opener,
       s.id AS subtopic_id, s.name AS subtopic, m.id AS meta_topic_id, m.name AS meta_topic,
       d.run_id AS dialogue_run_id, o.run_id AS opener_run_id
FROM dataset d
LEFT JOIN (SELECT DISTINCT ON (id) * FROM openers) o ON o.id = d.parent_id
LEFT JOIN (SELECT DISTINCT ON (id) * FROM topics) s ON s.id = o.parent_id
LEFT JOIN (SELECT DISTINCT ON (id) * FROM topics) m ON m.id = s.parent_id;

-- UltraChat Table 4 style figures (lengths in words).
CREATE OR REPLACE VIEW stats AS
WITH utt AS (
  SELECT d.id, d.sector, d.rounds, len(string_split(trim(t.content), ' ')) AS words
  FROM dataset d, unnest(d.turns) AS u(t)
)
SELECT sector,
       count(DISTINCT id) AS dialogues,
       round(avg(rounds), 2) AS avg_rounds,
       round(sum(words) / count(DISTINCT id), 1) AS avg_dialogue_words,
       round(avg(words), 1) AS avg_utterance_words
FROM utt GROUP BY sector;

CREATE OR REPLACE VIEW cost_by_stage AS
SELECT role, model, status, count(*) AS calls,
       sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens,
       round(sum(cost_usd), 6) AS cost_usd, round(avg(latency_ms), 1) AS avg_latency_ms
FROM llm_calls GROUP BY ALL ORDER BY role, model, status;
