import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { createHeraldClient, type HeraldClient } from "@herald/client";
import "@herald/react/styles.css";
import "./demo.css";
import { App, NoToken } from "./App.js";
import { readSettings } from "./settings.js";

declare global {
  interface Window {
    /** For the browser tests: the client, and the seq of every "notification" event in order. */
    heraldDemo?: { client: HeraldClient; delivered: number[] };
  }
}

const settings = readSettings(location.hash, location.hostname);
const root = createRoot(document.getElementById("root")!);

// The settings live in the fragment: a new fragment is a new session.
window.addEventListener("hashchange", () => location.reload());

if (settings.token === null) {
  root.render(
    <StrictMode>
      <NoToken />
    </StrictMode>,
  );
} else {
  const token = settings.token;
  const client = createHeraldClient({ url: settings.gateway, getToken: () => token });
  const delivered: number[] = [];
  client.on("notification", (n) => {
    delivered.push(n.seq);
  });
  window.heraldDemo = { client, delivered };
  root.render(
    <StrictMode>
      <App client={client} gateway={settings.gateway} categories={settings.categories} />
    </StrictMode>,
  );
}
