"""The tables: feeds and their articles, and the readers' side (chats, topics, alerts).

Typed SQLAlchemy 2 models. Every datetime is timezone-aware UTC, on SQLite as on PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A datetime stored as UTC and always read back timezone-aware (SQLite keeps none)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # raw SQL on SQLite hands back text
            value = datetime.fromisoformat(value)
        assert isinstance(value, datetime)  # noqa: S101 - the column only ever holds datetimes
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base with a constraint naming convention (stable migration names)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}  # noqa: RUF012 - SQLAlchemy's own hook


class Feed(Base):
    """A feed the newsroom watches, with what its last fetches said."""

    __tablename__ = "feeds"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2048), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    title: Mapped[str] = mapped_column(String(1000), default="", server_default="")
    site_link: Mapped[str | None] = mapped_column(String(2048))
    breaking: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Added by an editor in a chat: always fetched refusing private addresses (unless the
    # operator allows them), on every poll and every redirect.
    added_in_chat: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Conditional GET validators from the last successful fetch.
    etag: Mapped[str | None] = mapped_column(String(1024))
    last_modified: Mapped[str | None] = mapped_column(String(200))
    last_fetch_at: Mapped[datetime | None]
    last_success_at: Mapped[datetime | None]
    last_status: Mapped[str | None] = mapped_column(String(40))
    last_error: Mapped[str | None] = mapped_column(String(1000))
    failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_fetch_at: Mapped[datetime | None] = mapped_column(index=True)
    # Which process is fetching the feed now, until when (FOR UPDATE SKIP LOCKED leases:
    # each due feed fetched by one process; a dead process's lease runs out).
    leased_by: Mapped[str | None] = mapped_column(String(64))
    leased_until: Mapped[datetime | None]
    # When the editors were told the feed is broken (cleared when told it recovered).
    reported_at: Mapped[datetime | None]

    articles: Mapped[list[Article]] = relationship(back_populates="feed", passive_deletes=True)

    @property
    def display_name(self) -> str:
        """The operator's name for the feed, else its own title, else its URL."""
        return self.name or self.title or self.url


class Article(Base):
    """One story, however many times and from however many feeds it was seen."""

    __tablename__ = "articles"
    __table_args__ = (
        Index("ix_articles_published_at_id", "published_at", "id"),
        # A feed's newest arrivals (metrics, silent-feed reports) read off the index.
        Index("ix_articles_feed_id_first_seen_at", "feed_id", "first_seen_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # guid, else canonical link, else a hash of source and title (see bot.feeds.ingest).
    uid: Mapped[str] = mapped_column(String(512), unique=True)
    feed_id: Mapped[int | None] = mapped_column(ForeignKey("feeds.id", ondelete="SET NULL"))
    link: Mapped[str | None] = mapped_column(String(2048), index=True)
    # The canonical link when it names one story (None when several items share it): unique,
    # so two processes storing one story from two feeds cannot both insert it.
    link_key: Mapped[str | None] = mapped_column(String(2048), index=True, unique=True)
    title: Mapped[str] = mapped_column(Text)
    summary: Mapped[str] = mapped_column(Text, default="", server_default="")
    # The text engine's normalised terms (bot.text.index_text), space-separated: what the
    # search index holds. Storage never derives them itself; writers pass them in. Search
    # also needs an index beside them, built by migration 0002 and invisible to the model:
    # an FTS5 table (articles_fts) on SQLite, a generated tsvector column with a GIN index
    # (search_vector) on PostgreSQL.
    title_terms: Mapped[str] = mapped_column(Text, default="", server_default="")
    summary_terms: Mapped[str] = mapped_column(Text, default="", server_default="")
    categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    published_at: Mapped[datetime]
    first_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime | None]
    # False for a feed's first batch and for items older than the backlog age.
    alertable: Mapped[bool] = mapped_column(Boolean)
    breaking: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The event it reports, with the articles of other feeds that report it too (None:
    # stored before stories were kept, until ``newsbot stories --regroup``).
    # A plain column, no foreign key (SQLite cannot add one to a table without copying it,
    # see migration 0009); stories are never deleted.
    story_id: Mapped[int | None] = mapped_column(index=True)

    feed: Mapped[Feed | None] = relationship(back_populates="articles")


class Story(Base):
    """One event, as reported by one or more articles (of one or several feeds)."""

    __tablename__ = "stories"

    id: Mapped[int] = mapped_column(primary_key=True)
    first_seen_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)


class Chat(Base):
    """A private chat, group or channel the bot talks to."""

    __tablename__ = "chats"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(20))
    title: Mapped[str | None] = mapped_column(String(300))
    language: Mapped[str] = mapped_column(String(10), default="ar", server_default="ar")
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    muted_until: Mapped[datetime | None]
    quiet_from: Mapped[int | None] = mapped_column(Integer)  # minutes after local midnight
    quiet_to: Mapped[int | None] = mapped_column(Integer)
    # A channel the operator added without topics receives every breaking story.
    all_breaking: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Topic(Base):
    """Something readers follow: a catalog topic or a free phrase, by its normalised key."""

    __tablename__ = "topics"
    __table_args__ = (Index("ix_topics_created_by_created_at", "created_by", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(300), unique=True)
    label: Mapped[str] = mapped_column(String(300))
    # When and by which chat it was first followed (None: before Newsbot kept count, or
    # the operator's): a chat creates only so many free phrases a day, and a topic nobody
    # follows is deleted only once that day is over, so that unfollowing frees no quota.
    created_at: Mapped[datetime | None] = mapped_column(default=utcnow)
    created_by: Mapped[int | None] = mapped_column(BigInteger)


class Subscription(Base):
    """A chat follows a topic."""

    __tablename__ = "subscriptions"
    __table_args__ = (UniqueConstraint("chat_id", "topic_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    chat_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("chats.id", ondelete="CASCADE", onupdate="CASCADE")
    )
    topic_id: Mapped[int] = mapped_column(ForeignKey("topics.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Alert(Base):
    """A breaking story (or an editor's message) to push to its readers."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(primary_key=True)
    article_id: Mapped[int | None] = mapped_column(
        ForeignKey("articles.id", ondelete="SET NULL"), unique=True
    )
    text: Mapped[str | None] = mapped_column(Text)  # an editor's own words
    created_by: Mapped[int | None] = mapped_column(BigInteger)
    # The keys of the followed topics it matched (shown as hashtags).
    topics: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    # Who it goes to, for the fan-out that writes its deliveries after it is stored: the
    # followers of these topics, with ``to_all_breaking`` the chats taking every breaking
    # story too, or with ``to_everyone`` every chat that receives alerts.
    to_topic_ids: Mapped[list[int]] = mapped_column(JSON, default=list, server_default="[]")
    to_all_breaking: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    to_everyone: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # How far the fan-out got: deliveries are written for its chats up to this id (None:
    # none yet), in chat id order; ``fanned_out_at`` is set once they all are.
    fanout_cursor: Mapped[int | None] = mapped_column(BigInteger)
    fanned_out_at: Mapped[datetime | None] = mapped_column(index=True)
    # The story it pushes: its followers get one push per story; later articles confirm it
    # (an edit of that push) or develop it (``kind`` "development": a reply to it).
    story_id: Mapped[int | None] = mapped_column(index=True)  # no foreign key: see Article
    kind: Mapped[str] = mapped_column(String(20), default="alert", server_default="alert")


class Draft(Base):
    """An editor's alert, previewed and waiting for «Send» or «Cancel» until it expires.

    Stored, not kept in memory: a restart keeps it, and any process may take the press.
    """

    __tablename__ = "drafts"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    editor_id: Mapped[int] = mapped_column(BigInteger)
    text: Mapped[str] = mapped_column(Text)
    topic_key: Mapped[str | None] = mapped_column(String(300))
    topic_label: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class Delivery(Base):
    """The outbox: one row per alert and chat, marked as the sender goes."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("alert_id", "chat_id"),
        # Due rows in the order they are claimed, read off the index without a sort.
        Index("ix_deliveries_state_due_at_id", "state", "due_at", "id"),
        # The few messages due for an edit; rows written by a fan-out are not in it.
        Index(
            "ix_deliveries_edit_due_at",
            "edit_due_at",
            postgresql_where=text("edit_due_at IS NOT NULL"),
            sqlite_where=text("edit_due_at IS NOT NULL"),
        ),
    )

    # alert_id and chat_id name an alert and a chat without foreign keys: a story followed
    # by a million readers writes a million rows, and checking two keys per row was nearly
    # half that time (benchmarks/fanout_million.py). The rows are written from the chats
    # themselves (INSERT … SELECT), alerts are never deleted, and storage.chats moves or
    # deletes a chat's rows with the chat (the only place a chat's id changes or a chat goes).
    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[int] = mapped_column(Integer)
    chat_id: Mapped[int] = mapped_column(BigInteger, index=True)
    state: Mapped[str] = mapped_column(String(20), default="pending", server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    due_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(String(1000))
    # The sender that claimed the row (its process's identity): recovery takes back only the
    # rows of senders that are gone, never those a live sender has in flight.
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    # The message Telegram made of it, once sent: what a confirmation edits and a
    # development replies to.
    message_id: Mapped[int | None] = mapped_column(BigInteger)
    # Set when the story it pushed was confirmed by another outlet: the message is to be
    # edited from then on (one pending edit per message, however many confirmations).
    edit_due_at: Mapped[datetime | None]


class HandledUpdate(Base):
    """An update of the bot already handled by one of its processes: Telegram delivers an
    update again when the poller that fetched it died before confirming it, or a webhook
    answer was lost; the second delivery is dropped."""

    __tablename__ = "handled_updates"

    bot_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    update_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    handled_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class UIState(Base):
    """What a chat's buttons need between two updates (a search's query and page, the topic
    browser's place), so any process can answer the next press. Found by a short random id
    that the buttons carry; gone after ``expires_at``."""

    __tablename__ = "ui_states"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    chat_id: Mapped[int] = mapped_column(BigInteger, index=True)
    kind: Mapped[str] = mapped_column(String(20))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


__all__ = [
    "Alert",
    "Article",
    "Base",
    "Chat",
    "Delivery",
    "Draft",
    "Feed",
    "HandledUpdate",
    "Story",
    "Subscription",
    "Topic",
    "UIState",
    "utcnow",
]
