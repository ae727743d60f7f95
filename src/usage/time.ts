/** Usage's units of time (src/usage/book.ts re-exports them). */
export const MINUTE_MS = 60_000;
export const HOUR_MS = 60 * MINUTE_MS;

export const floorTo = (ms: number, unit: number) => Math.floor(ms / unit) * unit;
