import { createContext, useContext, type ReactNode } from "react";
import type { HeraldClient } from "@herald/client";

const HeraldContext = createContext<HeraldClient | null>(null);
HeraldContext.displayName = "HeraldContext";

export interface HeraldProviderProps {
  /** A client made by the app with `createHeraldClient`. The provider neither connects nor closes it. */
  client: HeraldClient;
  children?: ReactNode;
}

/** Makes a `HeraldClient` available to the hooks and components below it. */
export function HeraldProvider({ client, children }: HeraldProviderProps) {
  return <HeraldContext.Provider value={client}>{children}</HeraldContext.Provider>;
}

/** The client given to the nearest `HeraldProvider`; throws when there is none. */
export function useHeraldClient(): HeraldClient {
  const client = useContext(HeraldContext);
  if (client === null) {
    throw new Error("useHeraldClient: no HeraldClient; wrap the tree in <HeraldProvider client={...}>");
  }
  return client;
}
