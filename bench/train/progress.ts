/**
 * What the training runs' command lines share (`npm run train:seed`, `npm run train:lm`): checking numeric flags, a
 * clock, and the progress bar on stderr (cli-progress) with a log that keeps the bar in place.
 */
import cliProgress from 'cli-progress';

/** A positive number (or integer) flag, else a RangeError naming it. */
export function positiveArg(name: string, text: string, integer: boolean): number {
  const v = Number(text);
  if (!Number.isFinite(v) || v <= 0 || (integer && !Number.isInteger(v))) {
    throw new RangeError(`--${name} must be a positive ${integer ? 'integer' : 'number'}, got '${text}'`);
  }
  return v;
}

/** Seconds as m:ss. */
export function clock(s: number): string {
  const t = Math.max(0, Math.round(s));
  return `${Math.floor(t / 60)}:${String(t % 60).padStart(2, '0')}`;
}

/**
 * A bar of `totalSeconds` (its value is the elapsed time) with cli-progress's `format` and the first payload, and a
 * `log` that prints a line above the bar on a terminal and as a plain line elsewhere (a log file, CI).
 */
export function trainingBar(format: string, totalSeconds: number, payload: Record<string, unknown>): {
  bar: cliProgress.SingleBar;
  log: (line: string) => void;
  stop: () => void;
} {
  const multibar = new cliProgress.MultiBar({
    stream: process.stderr,
    format,
    barsize: 10,
    hideCursor: true,
    noTTYOutput: true,
    notTTYSchedule: 15_000,
  });
  const log = (line: string): void => {
    if (process.stderr.isTTY) multibar.log(line);
    else process.stderr.write(line);
  };
  return { bar: multibar.create(Math.round(totalSeconds), 0, payload), log, stop: () => multibar.stop() };
}
