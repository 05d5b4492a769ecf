import { useCallback, useEffect, useState, useSyncExternalStore } from "react";
import type { HeraldClient, Preferences } from "@herald/client";
import { HeraldProvider, Inbox, NotificationBell, useConnectionStatus } from "@herald/react";

export const LOCALES: ReadonlyArray<{ value: string; label: string }> = [
  { value: "en", label: "English" },
  { value: "de", label: "Deutsch" },
  { value: "pl", label: "Polski" },
  { value: "ru", label: "Русский" },
  { value: "ar", label: "العربية" },
];

const PANEL_ID = "herald-demo-inbox";

export function NoToken() {
  return (
    <main className="demo">
      <header className="demo__header">
        <h1 className="demo__title">Herald demo inbox</h1>
      </header>
      <section className="demo__notice" data-herald="no-token">
        <h2>No token yet</h2>
        <p>
          This page needs a user token in its address. Run <code>make run</code> in the Herald repository and open the
          demo URL it prints; it looks like <code>…/index.html#token=eyJ…</code>.
        </p>
        <p>
          To talk to a gateway other than <code>http://{location.hostname || "127.0.0.1"}:8083</code>, add{" "}
          <code>&amp;gateway=http://host:port</code>.
        </p>
      </section>
    </main>
  );
}

export interface AppProps {
  client: HeraldClient;
  gateway: string;
  categories: string[];
}

export function App({ client, gateway, categories }: AppProps) {
  return (
    <HeraldProvider client={client}>
      <Demo client={client} gateway={gateway} categories={categories} />
    </HeraldProvider>
  );
}

type PrefsState = { state: "loading" } | { state: "ready"; prefs: Preferences | null };

function Demo({ client, gateway, categories }: AppProps) {
  const [open, setOpen] = useState(true);
  const status = useConnectionStatus();
  const subscribeUser = useCallback(
    (onChange: () => void) => {
      const offs = [client.on("status", onChange), client.on("unread", onChange)];
      return () => offs.forEach((off) => off());
    },
    [client],
  );
  const userId = useSyncExternalStore(subscribeUser, () => client.userId);

  const [prefs, setPrefs] = useState<PrefsState>({ state: "loading" });
  // The locale the inbox shows (its change lists the inbox again, rendered in it).
  const [locale, setLocale] = useState("en");
  // The select's value: the chosen one while it is being saved.
  const [choice, setChoice] = useState("en");
  const [saving, setSaving] = useState(false);
  const [localeError, setLocaleError] = useState<string | null>(null);

  useEffect(() => {
    let live = true;
    client.getPreferences().then(
      (p) => {
        if (!live) return;
        const l = p.locale ?? "en";
        setPrefs({ state: "ready", prefs: p });
        setLocale(l);
        setChoice(l);
      },
      () => {
        if (live) setPrefs({ state: "ready", prefs: null });
      },
    );
    return () => {
      live = false;
    };
  }, [client]);

  useEffect(() => {
    document.documentElement.lang = locale;
  }, [locale]);

  const changeLocale = async (next: string) => {
    setChoice(next);
    setSaving(true);
    setLocaleError(null);
    try {
      const current = await client.getPreferences();
      const stored = await client.putPreferences({ ...current, locale: next });
      setPrefs({ state: "ready", prefs: stored });
      setLocale(stored.locale ?? next);
      setChoice(stored.locale ?? next);
    } catch (e) {
      setChoice(locale);
      setLocaleError(`Could not change the language: ${e instanceof Error ? e.message : String(e)}`);
    } finally {
      setSaving(false);
    }
  };

  const options = LOCALES.some((l) => l.value === choice) ? LOCALES : [...LOCALES, { value: choice, label: choice }];

  return (
    <main className="demo">
      <header className="demo__header">
        <h1 className="demo__title">Herald demo inbox</h1>
        <div className="demo__toolbar">
          <label className="demo__locale">
            <span className="demo__label">Language</span>
            <select
              data-herald="locale"
              value={choice}
              disabled={saving || prefs.state === "loading"}
              onChange={(e) => void changeLocale(e.currentTarget.value)}
            >
              {options.map((l) => (
                <option key={l.value} value={l.value} lang={l.value}>
                  {l.label}
                </option>
              ))}
            </select>
          </label>
          <NotificationBell expanded={open} controls={PANEL_ID} onClick={() => setOpen((o) => !o)} />
        </div>
      </header>

      <dl className="demo__facts">
        <div>
          <dt>Connection</dt>
          <dd>
            <span className="demo__status" data-herald="status" data-status={status}>
              {status}
            </span>
          </dd>
        </div>
        <div>
          <dt>User</dt>
          <dd data-herald="user">{userId ?? "—"}</dd>
        </div>
        <div>
          <dt>Gateway</dt>
          <dd>
            <code>{gateway}</code>
          </dd>
        </div>
      </dl>

      {localeError !== null && (
        <p className="demo__error" role="alert">
          {localeError}
        </p>
      )}

      <div id={PANEL_ID} className="demo__panel" hidden={!open}>
        {prefs.state === "loading" ? (
          <p className="demo__loading" role="status">
            Loading…
          </p>
        ) : (
          <Inbox render="current" locale={locale} categories={categories} />
        )}
      </div>
    </main>
  );
}
