export { HeraldProvider, useHeraldClient, type HeraldProviderProps } from "./context.js";
export {
  useUnreadCount,
  useCounts,
  useConnectionStatus,
  useHeraldEvent,
  useNotifications,
  type UseNotificationsOptions,
  type UseNotificationsResult,
} from "./hooks.js";
export {
  NotificationBell,
  defaultBellLabel,
  defaultUnseenLabel,
  formatBadge,
  type NotificationBellProps,
} from "./NotificationBell.js";
export { Inbox, defaultInboxLabels, type InboxProps, type InboxLabels, type InboxCategory } from "./Inbox.js";
export { formatRelativeTime, formatDateTime, useNow } from "./time.js";
