/** What the page reads from its URL fragment: `#token=<jwt>&gateway=<url>&categories=a,b`. */
export interface DemoSettings {
  token: string | null;
  /** The ws-gateway's base URL (http or https); default `http://<page host>:8083`. */
  gateway: string;
  categories: string[];
}

export const DEFAULT_CATEGORIES = ["orders", "security", "social"];

export function readSettings(hash: string, hostname: string): DemoSettings {
  const params = new URLSearchParams(hash.replace(/^#/, ""));
  const token = params.get("token")?.trim() || null;
  const gateway = (params.get("gateway")?.trim() || `http://${hostname || "127.0.0.1"}:8083`).replace(/\/+$/, "");
  const listed = params.get("categories");
  const categories =
    listed === null
      ? DEFAULT_CATEGORIES
      : listed
          .split(",")
          .map((c) => c.trim())
          .filter((c) => c !== "");
  return { token, gateway, categories };
}
