/**
 * The last resort of a process (DESIGN §4: "no process exits"): what happens to an error that nothing else handled.
 * Only entry points install it (`control-plane/src/main.ts`, `proxy/src/main.ts`, `scripts/start.ts`); libraries
 * and tests never do. Each such error is a bug to fix where it arose, so each is logged and counted
 * (`crochet_process_unhandled_errors_total`, both planes), never silently absorbed.
 *
 * The policy, by what can be known about the state the error left behind:
 * - An unhandled rejection: logged, counted, and the process goes on. The rejected promise's code has already
 *   unwound through its own try/finally blocks; nothing was interrupted half-way, only the failure went unseen.
 *   (Node's default is to exit, which turns one forgotten `.catch` on a rare path into an outage of every request.)
 * - An uncaught exception interrupted synchronous code at an arbitrary point, and Node documents that resuming is
 *   unsafe in general: what that code was updating may be half-done. Two cases:
 *   - a connection failure — an operating-system error (`syscall`, errno code) or one the caller's `survivable`
 *     recognizes (a database or Redis session that ended). These arrive as the 'error' event of a connection object
 *     nobody listened to: that object is dead, its owner (a pool, a reconnecting client) replaces it, and the code
 *     that emitted had nothing left to do. Logged, counted, and the process goes on.
 *   - anything else (a TypeError in a timer, an 'error' event of unknown origin): logged, counted, and the process
 *     shuts down in order (`shutdown`: stop taking requests, finish those in flight) and exits with status 70
 *     (EX_SOFTWARE), for its supervisor to start a clean one. Serving on from unknown state could charge or record
 *     wrongly, which is worse than a restart.
 */

import { Counter, type Registry } from 'prom-client';

export interface ProcessGuardLog {
  error(details: object, message: string): void;
  fatal(details: object, message: string): void;
}

export interface ProcessGuardOptions {
  log: ProcessGuardLog;
  /** More errors to survive as connection failures (e.g. the control plane's `isDatabaseUnavailable`). */
  survivable?: (error: unknown) => boolean;
  /** Stops the process in order after an exception it cannot survive; it should end with `process.exit`. */
  shutdown: () => void;
  /** How long `shutdown` may take before the process exits anyway. */
  shutdownTimeoutMs?: number;
}

/** Errors that reached the last resort in this process since start, by kind (for the metrics). */
export interface ProcessGuardStats {
  rejection: number;
  exception: number;
}

/** Exit status after an exception the guard would not survive (sysexits.h EX_SOFTWARE). */
export const EXIT_UNSAFE_STATE = 70;

const stats: ProcessGuardStats = { rejection: 0, exception: 0 };

export const processGuardStats = (): ProcessGuardStats => ({ ...stats });

/**
 * `crochet_process_unhandled_errors_total{kind}`, read from this process's counts at scrape time. Both planes export
 * it (under `npm start` they share one process, so they show the same counts).
 */
export const processGuardMetric = (registers: Registry[]): void => {
  new Counter({
    name: 'crochet_process_unhandled_errors_total',
    help: 'Errors that reached the process-wide last resort (kind: rejection, exception); each one is a bug.',
    labelNames: ['kind'],
    registers,
    collect() {
      this.reset();
      for (const [kind, count] of Object.entries(stats)) this.inc({ kind }, count);
    },
  });
};

/** An error the operating system reported for a socket, file or DNS lookup: it carries the failed call's name. */
export const isSystemError = (error: unknown): boolean => {
  const { code, syscall } = (error ?? {}) as { code?: unknown; syscall?: unknown };
  return typeof syscall === 'string' && typeof code === 'string';
};

/** Installs the policy above on this process; returns a function that removes it (tests). */
export const installProcessGuard = (options: ProcessGuardOptions): (() => void) => {
  const { log, survivable = () => false, shutdown, shutdownTimeoutMs = 15_000 } = options;
  let shuttingDown = false;

  const onRejection = (reason: unknown): void => {
    stats.rejection++;
    log.error({ err: reason }, 'unhandled promise rejection (a bug: a missing catch); the process goes on');
  };

  const onException = (error: unknown): void => {
    stats.exception++;
    if (isSystemError(error) || survivable(error)) {
      log.error({ err: error }, "unhandled connection 'error' event (a bug: a missing listener); the process goes on");
      return;
    }
    log.fatal({ err: error }, 'uncaught exception: state may be inconsistent; shutting down');
    if (shuttingDown) return;
    shuttingDown = true;
    // Whatever way the process ends from here, it ends as a failure.
    process.exitCode = EXIT_UNSAFE_STATE;
    setTimeout(() => process.exit(EXIT_UNSAFE_STATE), shutdownTimeoutMs).unref();
    shutdown();
  };

  process.on('unhandledRejection', onRejection);
  process.on('uncaughtException', onException);
  return () => {
    process.off('unhandledRejection', onRejection);
    process.off('uncaughtException', onException);
  };
};
