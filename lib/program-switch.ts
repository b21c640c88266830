/**
 * The on/off switch and counters of one kind of replayed program (the encoder forward of lib/forward-program.ts,
 * the decode step of lib/models/decode-program.ts): an environment variable set to '0' turns the kind off for the
 * process, tests flip it to compare with the eager path and read the counters to see which path a call took.
 */
export interface ProgramSwitch {
  /** Whether programs of this kind may be recorded and replayed. */
  enabled: boolean;
  /** Programs recorded and replays run so far in this process. */
  readonly stats: { recorded: number; runs: number };
  /** Sets {@link enabled}; returns the previous setting. */
  set(on: boolean): boolean;
  /** A copy of {@link stats}. */
  snapshot(): { recorded: number; runs: number };
}

/** A switch that starts on unless `process.env[envName]` is '0'. */
export function programSwitch(envName: string): ProgramSwitch {
  const sw: ProgramSwitch = {
    enabled: typeof process === 'undefined' || process.env[envName] !== '0',
    stats: { recorded: 0, runs: 0 },
    set(on: boolean): boolean {
      const was = sw.enabled;
      sw.enabled = on;
      return was;
    },
    snapshot: () => ({ ...sw.stats }),
  };
  return sw;
}
