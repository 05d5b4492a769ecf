import {
  useCallback,
  useEffect,
  useId,
  useRef,
  useState,
  type KeyboardEvent,
  type MouseEvent,
} from "react";
import type { Notification } from "@herald/client";
import { useNotifications, useUnreadCount } from "./hooks.js";
import { isRead } from "./items.js";
import { formatDateTime, formatRelativeTime, useNow } from "./time.js";

/** The texts of the inbox; pass some or all through `labels` to translate them. */
export interface InboxLabels {
  heading: string;
  unreadOnly: string;
  markAllRead: string;
  markRead: string;
  archive: string;
  loadMore: string;
  loading: string;
  empty: string;
  emptyUnread: string;
  error: string;
  retry: string;
  all: string;
  categories: string;
  unread: string;
  actionFailed: string;
}

export const defaultInboxLabels: InboxLabels = {
  heading: "Notifications",
  unreadOnly: "Unread only",
  markAllRead: "Mark all as read",
  markRead: "Mark as read",
  archive: "Archive",
  loadMore: "Load more",
  loading: "Loading…",
  empty: "You're all caught up. No notifications yet.",
  emptyUnread: "No unread notifications.",
  error: "Notifications could not be loaded.",
  retry: "Try again",
  all: "All",
  categories: "Categories",
  unread: "Unread",
  actionFailed: "That did not work. Please try again.",
};

export type InboxCategory = string | { value: string; label: string };

export interface InboxProps {
  /** Category tabs, after "All". A string is both the value and the label. */
  categories?: readonly InboxCategory[];
  /** How the server renders templated notifications; with `"current"`, a change of `locale` lists them again. */
  render?: "delivered" | "current";
  /** The locale of relative times and dates (default: the browser's). */
  locale?: string;
  /** Items per page (default 20). */
  pageSize?: number;
  /** Start in the unread-only view. */
  defaultUnreadOnly?: boolean;
  /** Texts, for translation. */
  labels?: Partial<InboxLabels>;
  /** Called when an item is opened (clicked, or Enter/Space on it), after it was marked read. */
  onOpen?: (notification: Notification) => void;
  id?: string;
  className?: string;
}

function categoryValue(c: InboxCategory): string {
  return typeof c === "string" ? c : c.value;
}

function categoryLabel(c: InboxCategory): string {
  return typeof c === "string" ? c : c.label;
}

/**
 * The inbox: category tabs, an unread-only toggle, "Mark all as read", and
 * the list (a WAI-ARIA feed: each item focusable, Arrow Up/Down move between
 * items, Enter or a click opens an item and marks it read) with infinite
 * scroll and a "Load more" button as fallback.
 */
export function Inbox({
  categories,
  render,
  locale,
  pageSize,
  defaultUnreadOnly = false,
  labels: labelOverrides,
  onOpen,
  id,
  className,
}: InboxProps) {
  const labels = { ...defaultInboxLabels, ...labelOverrides };
  const [unreadOnly, setUnreadOnly] = useState(defaultUnreadOnly);
  const [category, setCategory] = useState<string>("");
  const list = useNotifications({ unread: unreadOnly, category, render, pageSize });
  const { items, loading, error, hasMore, loadMore, refresh, retry } = list;
  const unread = useUnreadCount();
  const now = useNow();
  const [actionError, setActionError] = useState<string | null>(null);
  const uid = useId();
  const panelId = `${uid}-panel`;

  // With render "current", the text depends on the user's locale: list again when it changes.
  const shownLocale = useRef(locale);
  useEffect(() => {
    if (shownLocale.current === locale) return;
    shownLocale.current = locale;
    if (render === "current") void refresh();
  }, [locale, render, refresh]);

  const attempt = useCallback(
    (action: Promise<unknown>) => {
      setActionError(null);
      action.catch(() => setActionError(labels.actionFailed));
    },
    [labels.actionFailed],
  );

  const open = useCallback(
    (n: Notification) => {
      if (!isRead(n)) attempt(list.markRead(n.id));
      onOpen?.(n);
    },
    [attempt, list.markRead, onOpen],
  );

  // Infinite scroll: load the next page when the sentinel below the list comes into view.
  // Observing again after every page makes a still-visible sentinel load the next one too.
  const sentinel = useRef<HTMLDivElement | null>(null);
  useEffect(() => {
    const el = sentinel.current;
    if (el === null || !hasMore || loading || error !== null) return;
    if (typeof IntersectionObserver === "undefined") return;
    const observer = new IntersectionObserver(
      (entries) => {
        if (entries.some((e) => e.isIntersecting)) void loadMore();
      },
      { rootMargin: "0px 0px 200px 0px" },
    );
    observer.observe(el);
    return () => observer.disconnect();
  }, [hasMore, loading, error, loadMore, items.length]);

  const tabs: InboxCategory[] | null =
    categories && categories.length > 0 ? [{ value: "", label: labels.all }, ...categories] : null;
  const hasUnreadHeld = items.some((n) => !isRead(n));

  const onTabKeyDown = (e: KeyboardEvent<HTMLButtonElement>, index: number) => {
    if (tabs === null) return;
    const rtl = getComputedStyle(e.currentTarget).direction === "rtl";
    let next: number | null = null;
    if (e.key === "ArrowRight") next = index + (rtl ? -1 : 1);
    else if (e.key === "ArrowLeft") next = index + (rtl ? 1 : -1);
    else if (e.key === "Home") next = 0;
    else if (e.key === "End") next = tabs.length - 1;
    if (next === null) return;
    e.preventDefault();
    next = (next + tabs.length) % tabs.length;
    setCategory(categoryValue(tabs[next]!));
    const buttons = e.currentTarget.parentElement?.querySelectorAll<HTMLButtonElement>("[role=tab]");
    buttons?.[next]?.focus();
  };

  const failed = (
    <div className="herald-inbox__state herald-inbox__state--error" data-herald="error" role="alert">
      <p>{labels.error}</p>
      <button type="button" className="herald-button" onClick={() => void retry()}>
        {labels.retry}
      </button>
    </div>
  );
  let body;
  if (error !== null && items.length === 0) {
    body = failed;
  } else if (items.length === 0 && loading) {
    body = (
      <div className="herald-inbox__state" role="status">
        {labels.loading}
      </div>
    );
  } else if (items.length === 0) {
    body = (
      <div className="herald-inbox__state herald-inbox__state--empty" data-herald="empty" role="status">
        {unreadOnly ? labels.emptyUnread : labels.empty}
      </div>
    );
  } else {
    body = (
      <>
        <div className="herald-inbox__list" role="feed" aria-busy={loading} aria-label={labels.heading}>
          {items.map((n, i) => (
            <InboxItem
              key={n.id}
              notification={n}
              position={i + 1}
              setSize={hasMore ? -1 : items.length}
              now={now}
              locale={locale}
              labels={labels}
              onOpen={open}
              onMarkRead={(n) => attempt(list.markRead(n.id))}
              onArchive={(n) => attempt(list.archive(n.id))}
            />
          ))}
        </div>
        {error !== null && failed}
        {hasMore && error === null && (
          <div className="herald-inbox__more">
            <div ref={sentinel} className="herald-inbox__sentinel" aria-hidden="true" />
            <button
              type="button"
              className="herald-button"
              data-herald="load-more"
              onClick={() => void loadMore()}
              disabled={loading}
            >
              {loading ? labels.loading : labels.loadMore}
            </button>
          </div>
        )}
      </>
    );
  }

  return (
    <section id={id} className={className ? `herald-inbox ${className}` : "herald-inbox"} aria-labelledby={`${uid}-heading`}>
      <header className="herald-inbox__header">
        <h2 className="herald-inbox__heading" id={`${uid}-heading`}>
          {labels.heading}
          {unread > 0 && (
            <span className="herald-inbox__count" aria-hidden="true">
              {unread}
            </span>
          )}
        </h2>
        <div className="herald-inbox__actions">
          <button
            type="button"
            className="herald-button herald-button--toggle"
            data-herald="unread-filter"
            aria-pressed={unreadOnly}
            onClick={() => setUnreadOnly((v) => !v)}
          >
            {labels.unreadOnly}
          </button>
          <button
            type="button"
            className="herald-button"
            data-herald="mark-all-read"
            disabled={unread === 0 && !hasUnreadHeld}
            onClick={() => attempt(list.markAllRead())}
          >
            {labels.markAllRead}
          </button>
        </div>
      </header>
      {tabs !== null && (
        <div className="herald-inbox__tabs" role="tablist" aria-label={labels.categories}>
          {tabs.map((c, i) => {
            const value = categoryValue(c);
            const selected = value === category;
            return (
              <button
                key={`tab:${value}`}
                type="button"
                role="tab"
                id={`${uid}-tab-${i}`}
                className="herald-inbox__tab"
                data-herald="category"
                data-category={value}
                aria-selected={selected}
                aria-controls={panelId}
                tabIndex={selected ? 0 : -1}
                onClick={() => setCategory(value)}
                onKeyDown={(e) => onTabKeyDown(e, i)}
              >
                {categoryLabel(c)}
              </button>
            );
          })}
        </div>
      )}
      <div
        id={panelId}
        className="herald-inbox__panel"
        role={tabs !== null ? "tabpanel" : undefined}
        aria-labelledby={
          tabs !== null ? `${uid}-tab-${Math.max(0, tabs.findIndex((c) => categoryValue(c) === category))}` : undefined
        }
      >
        {actionError !== null && (
          <p className="herald-inbox__notice" role="alert" data-herald="action-error">
            {actionError}
          </p>
        )}
        {body}
      </div>
    </section>
  );
}

interface InboxItemProps {
  notification: Notification;
  position: number;
  setSize: number;
  now: number;
  locale: string | undefined;
  labels: InboxLabels;
  onOpen: (n: Notification) => void;
  onMarkRead: (n: Notification) => void;
  onArchive: (n: Notification) => void;
}

function InboxItem({ notification: n, position, setSize, now, locale, labels, onOpen, onMarkRead, onArchive }: InboxItemProps) {
  const uid = useId();
  const read = isRead(n);

  const onClick = (e: MouseEvent<HTMLElement>) => {
    // The item's own buttons do their own thing.
    if ((e.target as Element).closest("button") !== null) return;
    onOpen(n);
  };

  const onKeyDown = (e: KeyboardEvent<HTMLElement>) => {
    if (e.target !== e.currentTarget) return;
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      onOpen(n);
    } else if (e.key === "ArrowDown" || e.key === "PageDown") {
      const next = e.currentTarget.nextElementSibling;
      if (next instanceof HTMLElement) {
        e.preventDefault();
        next.focus();
      }
    } else if (e.key === "ArrowUp" || e.key === "PageUp") {
      const prev = e.currentTarget.previousElementSibling;
      if (prev instanceof HTMLElement) {
        e.preventDefault();
        prev.focus();
      }
    }
  };

  return (
    <article
      className={read ? "herald-item" : "herald-item herald-item--unread"}
      data-herald="item"
      data-id={n.id}
      data-seq={n.seq}
      data-read={read ? "true" : "false"}
      data-priority={n.priority}
      data-muted={n.muted === true ? "true" : undefined}
      tabIndex={0}
      aria-labelledby={read ? `${uid}-title` : `${uid}-state ${uid}-title`}
      aria-describedby={`${uid}-body`}
      aria-posinset={position}
      aria-setsize={setSize}
      onClick={onClick}
      onKeyDown={onKeyDown}
    >
      <span className="herald-item__dot" aria-hidden="true" />
      <div className="herald-item__content">
        {!read && (
          <span className="herald-visually-hidden" id={`${uid}-state`}>
            {labels.unread}:
          </span>
        )}
        <h3 className="herald-item__title" data-herald="item-title" id={`${uid}-title`} dir="auto" lang={n.locale ?? undefined}>
          {n.title}
        </h3>
        <p className="herald-item__body" data-herald="item-body" id={`${uid}-body`} dir="auto" lang={n.locale ?? undefined}>
          {n.body}
        </p>
        <p className="herald-item__meta">
          <time dateTime={n.created_at} title={formatDateTime(n.created_at, locale)}>
            {formatRelativeTime(n.created_at, now, locale)}
          </time>
          {n.category ? (
            <span className="herald-item__category" dir="auto">
              {n.category}
            </span>
          ) : null}
        </p>
      </div>
      <div className="herald-item__actions">
        {!read && (
          <IconButton
            action="mark-read"
            label={labels.markRead}
            subject={n.title}
            path={CHECK_PATH}
            strokeWidth="2.2"
            onClick={() => onMarkRead(n)}
          />
        )}
        <IconButton action="archive" label={labels.archive} subject={n.title} path={ARCHIVE_PATH} onClick={() => onArchive(n)} />
      </div>
    </article>
  );
}

const CHECK_PATH = "M5 12.5l4.5 4.5L19 7.5";
const ARCHIVE_PATH = "M3.5 5.5h17v4h-17zM5 9.5v9a1 1 0 0 0 1 1h12a1 1 0 0 0 1-1v-9M10 13h4";

interface IconButtonProps {
  /** The `data-herald` name tests and styles use. */
  action: string;
  label: string;
  /** What the action applies to, for the accessible name. */
  subject: string;
  /** The icon: one SVG path on a 24x24 grid, stroked. */
  path: string;
  strokeWidth?: string;
  onClick(): void;
}

/** A per-item action: an icon button named "<label>: <subject>". */
function IconButton({ action, label, subject, path, strokeWidth = "2", onClick }: IconButtonProps) {
  return (
    <button
      type="button"
      className="herald-icon-button"
      data-herald={action}
      aria-label={`${label}: ${subject}`}
      title={label}
      onClick={onClick}
    >
      <svg viewBox="0 0 24 24" width="18" height="18" aria-hidden="true" focusable="false">
        <path fill="none" stroke="currentColor" strokeWidth={strokeWidth} strokeLinecap="round" strokeLinejoin="round" d={path} />
      </svg>
    </button>
  );
}
