// The distribution's Chromium, driven by playwright-core (no downloaded
// browser): CHROMIUM names another binary.

import { existsSync } from "node:fs";
import { chromium } from "playwright-core";

export function chromiumPath() {
  const candidates = [process.env.CHROMIUM, "/usr/bin/chromium", "/usr/bin/chromium-browser"].filter(Boolean);
  const found = candidates.find((path) => existsSync(path));
  if (!found) {
    throw new Error("Chromium not found: install it (Debian: apt-get install chromium; scripts/clients-deps.sh does it as root) or set CHROMIUM");
  }
  return found;
}

export async function launch() {
  return chromium.launch({
    executablePath: chromiumPath(),
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking"],
  });
}
