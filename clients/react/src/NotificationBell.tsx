import type { ButtonHTMLAttributes } from "react";
import { useCounts } from "./hooks.js";

export interface NotificationBellProps
  extends Omit<ButtonHTMLAttributes<HTMLButtonElement>, "children" | "aria-label" | "aria-expanded" | "type"> {
  /** Whether the panel the bell opens is open: sets `aria-expanded` (left out when undefined). */
  expanded?: boolean;
  /** The id of the panel the bell opens: sets `aria-controls`. */
  controls?: string;
  /** Above this the badge shows "<max>+" (default 99). */
  max?: number;
  /**
   * What the badge counts: `unread` (default), or `unseen` (clears when the
   * feed is opened: call `client.markSeen()` then); `category` narrows it
   * to one category.
   */
  badge?: "unread" | "unseen";
  category?: string;
  /** The accessible name; default "Notifications, 3 unread" ("Notifications" when 0). */
  label?: (count: number) => string;
}

export function defaultBellLabel(count: number): string {
  return count === 0 ? "Notifications" : `Notifications, ${count} unread`;
}

/** "Notifications, 3 new" ("Notifications" when 0): the default label of an `unseen` badge. */
export function defaultUnseenLabel(count: number): string {
  return count === 0 ? "Notifications" : `Notifications, ${count} new`;
}

export function formatBadge(count: number, max = 99): string {
  return count > max ? `${max}+` : String(count);
}

/** A button with a bell and the unread (or unseen) count as a badge (hidden when 0, still in the DOM). */
export function NotificationBell({
  expanded,
  controls,
  max = 99,
  badge = "unread",
  category,
  label = badge === "unseen" ? defaultUnseenLabel : defaultBellLabel,
  className,
  ...rest
}: NotificationBellProps) {
  const counts = useCounts();
  const counted = category === undefined ? counts : counts.by_category[category];
  const count = counted?.[badge] ?? 0;
  return (
    <button
      {...rest}
      type="button"
      className={className ? `herald-bell ${className}` : "herald-bell"}
      aria-label={label(count)}
      aria-expanded={expanded}
      aria-controls={controls}
    >
      <svg className="herald-bell__icon" viewBox="0 0 24 24" width="24" height="24" aria-hidden="true" focusable="false">
        <path
          fill="currentColor"
          d="M12 22a2.5 2.5 0 0 0 2.45-2h-4.9A2.5 2.5 0 0 0 12 22Zm7-6V11a7 7 0 0 0-5.5-6.84V3.5a1.5 1.5 0 0 0-3 0v.66A7 7 0 0 0 5 11v5l-1.7 1.7A1 1 0 0 0 4 19.4h16a1 1 0 0 0 .7-1.7L19 16Z"
        />
      </svg>
      <span className="herald-badge" data-herald="badge" data-count={count} aria-hidden="true" hidden={count === 0}>
        {formatBadge(count, max)}
      </span>
    </button>
  );
}
