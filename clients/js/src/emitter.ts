/** A minimal typed event emitter; a listener that throws is reported and does not stop the others. */
export interface Emitter<E> {
  on<K extends keyof E>(event: K, listener: (value: E[K]) => void): () => void;
  emit<K extends keyof E>(event: K, value: E[K]): void;
}

export function emitter<E>(): Emitter<E> {
  const listeners = new Map<keyof E, Set<(value: never) => void>>();
  return {
    on(event, listener) {
      let set = listeners.get(event);
      if (!set) listeners.set(event, (set = new Set()));
      set.add(listener);
      return () => void set.delete(listener);
    },
    emit(event, value) {
      for (const listener of [...(listeners.get(event) ?? [])]) {
        try {
          (listener as (v: typeof value) => void)(value);
        } catch (e) {
          console.error(e);
        }
      }
    },
  };
}
