/**
 * Whether native calls are being recorded for async execution (lib/async.ts):
 * the execution context's `recording` field (lib/context.ts), read here by
 * the native backend.
 */
import { currentContext, type CommandList } from '../context';

export type { CommandList } from '../context';

/** The list calls are being recorded into, or null when calls run immediately. */
export function recordingList(): CommandList | null {
  return currentContext().recording;
}
