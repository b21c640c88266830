/**
 * Recording state for async execution (see lib/async.ts): while a command
 * list is open, the native backend appends each kernel call to it instead of
 * running it; `submit` then runs the whole list on the native executor thread.
 */

/** An opaque native command list (created by the addon). */
export type CommandList = { readonly __commandList: unique symbol };

let open: CommandList | null = null;

/** The list calls are being recorded into, or null when calls run immediately. */
export function recordingList(): CommandList | null {
  return open;
}

/** Opens (or, with null, closes) the recording list. */
export function setRecordingList(list: CommandList | null): void {
  open = list;
}
