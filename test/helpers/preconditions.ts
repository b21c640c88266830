/**
 * Tests that need something outside the test run (a second build, a tool). Without it they do not vanish: the run
 * shows a skipped test whose name says what is missing and how to get it. In CI (CI=true), where the job provides
 * every precondition, a missing one is a failure instead: a skip there would hide that the check never ran.
 */
import { it } from 'vitest';

/** Whether a missing precondition fails the run (CI) instead of skipping. */
export const preconditionsRequired = process.env.CI === 'true';

/** Registers the visible skip (or, when `required`, the failing test) for a missing precondition. */
export function missingPrecondition(reason: string, required = preconditionsRequired): void {
  if (required) {
    it(`precondition missing: ${reason}`, () => {
      throw new Error(`${reason} — required here (CI=true or an explicit request), so this fails instead of skipping`);
    });
  } else {
    it.skip(`skipped: ${reason}`, () => {});
  }
}
