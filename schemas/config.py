"""The typed run configuration: every knob of the DAG. Loaded from TOML, env and CLI flags."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# UltraChat's 30 meta-topics (paper, Sector I).
META_TOPICS = [
    "Technology", "Health and wellness", "Travel and adventure", "Food and drink",
    "Art and culture", "Science and innovation", "Fashion and style", "Relationships and dating",
    "Sports and fitness", "Nature and the environment", "Music and entertainment",
    "Politics and current events", "Education and learning", "Money and finance",
    "Work and career", "Philosophy and ethics", "History and nostalgia",
    "Social media and communication", "Creativity and inspiration",
    "Personal growth and development", "Spirituality and faith", "Pop culture and trends",
    "Beauty and self-care", "Family and parenting", "Entrepreneurship and business",
    "Literature and writing", "Gaming and technology", "Mindfulness and meditation",
    "Diversity and inclusion", "Travel and culture exchange",
]  # fmt: skip


class _Strict(BaseModel):
    # Unknown keys are errors: a typo in a config must not silently fall back to a default.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RoleConfig(_Strict):
    """One LLM role. An empty base_url means the embedded llama.cpp server."""

    base_url: str = ""
    model: str = ""
    api_key_env: str = Field("OPENAI_API_KEY", description="Name of the env var holding the key")
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    max_tokens: int = Field(256, ge=1, le=32768)
    usd_per_1m_input: float = Field(0.0, ge=0.0)
    usd_per_1m_output: float = Field(0.0, ge=0.0)
    structured: Literal["json_schema", "json_object", "off"] = Field(
        "json_schema",
        description="How to ask for JSON-schema constrained lists: OpenAI's json_schema, "
        "llama.cpp's json_object+schema, or off (plain text, parsed)",
    )


class LLMConfig(_Strict):
    concurrency: int = Field(4, ge=1, le=1024)
    max_attempts: int = Field(6, ge=1, le=50, description="Tries per request incl. the first")
    backoff_base_s: float = Field(0.5, ge=0.0)
    backoff_max_s: float = Field(30.0, ge=0.0)
    timeout_s: float = Field(120.0, gt=0.0)
    budget_tokens: int = Field(0, ge=0, description="0 = unlimited")
    budget_usd: float = Field(0.0, ge=0.0, description="0 = unlimited")
    question_writer: RoleConfig = RoleConfig(max_tokens=384)
    user_simulator: RoleConfig = RoleConfig(max_tokens=96, temperature=0.9)
    assistant: RoleConfig = RoleConfig(max_tokens=256)
    judge: RoleConfig = RoleConfig(max_tokens=128, temperature=0.0)


class EmbeddedConfig(_Strict):
    threads: int = Field(2, ge=1, le=256)
    n_ctx: int = Field(2048, ge=256, le=32768)
    startup_timeout_s: float = Field(120.0, gt=0)


class WarehouseConfig(_Strict):
    root: str = "data"
    catalog: str = Field(
        "", description="DuckDB catalog path (empty: catalog.duckdb inside the root)"
    )


class TopicsConfig(_Strict):
    meta_topics: list[str] = Field(default_factory=lambda: list(META_TOPICS), min_length=1)
    limit_meta_topics: int = Field(0, ge=0, description="Use only the first N (0 = all)")
    subtopics_per_topic: int = Field(30, ge=1, le=200)

    def in_scope(self) -> list[str]:
        """The meta-topics this run covers: the first limit_meta_topics of the list (0 = all)."""
        return self.meta_topics[: self.limit_meta_topics or None]


class QuestionsConfig(_Strict):
    per_subtopic: int = Field(10, ge=1, le=100)


class DialoguesConfig(_Strict):
    rounds_min: int = Field(3, ge=1, le=50)
    rounds_max: int = Field(7, ge=1, le=50)
    target_dialogues: int = Field(
        0, ge=0, description="Complete dialogues wanted in scope (0 = one for every opener)"
    )
    flush_every: int = Field(8, ge=1, description="Dialogues per Parquet part while a batch runs")
    history_chars: int = Field(
        5000, ge=200, description="Most recent conversation text sent to either model"
    )

    @model_validator(mode="after")
    def _range(self) -> DialoguesConfig:
        if self.rounds_min > self.rounds_max:
            raise ValueError(
                f"rounds_min ({self.rounds_min}) must be <= rounds_max ({self.rounds_max})"
            )
        return self


class RunConfig(_Strict):
    """Everything one build needs. Secrets are never here: only the names of their env vars."""

    name: str = Field("convoforge", pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = 42
    sectors: list[Literal["world"]] = ["world"]
    warehouse: WarehouseConfig = WarehouseConfig()
    topics: TopicsConfig = TopicsConfig()
    questions: QuestionsConfig = QuestionsConfig()
    dialogues: DialoguesConfig = DialoguesConfig()
    llm: LLMConfig = LLMConfig()
    embedded: EmbeddedConfig = EmbeddedConfig()

    def role(self, name: str) -> RoleConfig:
        return getattr(self.llm, name)

    def uses_embedded(self) -> bool:
        return any(not self.role(r).base_url for r in ROLES)


ROLES = ("question_writer", "user_simulator", "assistant", "judge")
