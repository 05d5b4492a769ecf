import { useEffect, useState } from "react";

const relativeFormats = new Map<string, Intl.RelativeTimeFormat>();
const dateFormats = new Map<string, Intl.DateTimeFormat>();

function cached<F>(cache: Map<string, F>, locale: string | undefined, make: (locale: string | undefined) => F): F {
  const key = locale ?? "";
  let f = cache.get(key);
  if (f === undefined) {
    try {
      f = make(locale);
    } catch {
      f = make(undefined); // not a valid BCP 47 tag: the runtime's default locale
    }
    cache.set(key, f);
  }
  return f;
}

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const WEEK = 7 * DAY;
const MONTH = 30 * DAY;
const YEAR = 365 * DAY;

/** "3 minutes ago", "vor 2 Stunden", "أمس"… in `locale` (the runtime's default when absent); "" for an unreadable time. */
export function formatRelativeTime(time: string | number | Date, now: number, locale?: string): string {
  const t = time instanceof Date ? time.getTime() : typeof time === "number" ? time : Date.parse(time);
  if (!Number.isFinite(t)) return "";
  const rtf = cached(relativeFormats, locale, (l) => new Intl.RelativeTimeFormat(l, { numeric: "auto" }));
  const diff = t - now;
  const abs = Math.abs(diff);
  if (abs < MINUTE) return rtf.format(0, "second");
  if (abs < HOUR) return rtf.format(Math.round(diff / MINUTE), "minute");
  if (abs < DAY) return rtf.format(Math.round(diff / HOUR), "hour");
  if (abs < WEEK) return rtf.format(Math.round(diff / DAY), "day");
  if (abs < MONTH) return rtf.format(Math.round(diff / WEEK), "week");
  if (abs < YEAR) return rtf.format(Math.round(diff / MONTH), "month");
  return rtf.format(Math.round(diff / YEAR), "year");
}

/** The full date and time in `locale`, for a tooltip. */
export function formatDateTime(time: string, locale?: string): string {
  const t = Date.parse(time);
  if (!Number.isFinite(t)) return time;
  return cached(dateFormats, locale, (l) => new Intl.DateTimeFormat(l, { dateStyle: "medium", timeStyle: "short" })).format(t);
}

/** `Date.now()`, updated every `intervalMs` (default: each minute). */
export function useNow(intervalMs = MINUTE): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    setNow(Date.now());
    const timer = setInterval(() => setNow(Date.now()), intervalMs);
    return () => clearInterval(timer);
  }, [intervalMs]);
  return now;
}
