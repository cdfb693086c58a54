/**
 * A control-plane job that runs every `intervalMs` (the first run one interval after start; 0: only on demand), one
 * run at a time in this process: a run asked for while another is going is skipped (`onSkip`) and answers null.
 * Whether another control plane runs it at the same moment is the job's own business (an advisory lock).
 */
export interface PeriodicJob<T> {
  /** One run now; null when a run is already going here (or the job itself decided to skip). */
  runOnce(): Promise<T | null>;
  /** Stops the timer and waits for a run in progress. Call before closing what the job uses. */
  stop(): Promise<void>;
}

export const startPeriodic = <T>(options: {
  intervalMs: number;
  /** `scheduled`: started by the timer rather than on demand. */
  run: (scheduled: boolean) => Promise<T | null>;
  onSkip: () => void;
  /** A scheduled run that failed; the next interval tries again. */
  onError: (error: unknown) => void;
}): PeriodicJob<T> => {
  let stopped = false;
  let running: Promise<T | null> | null = null;
  let timer: NodeJS.Timeout | null = null;

  const start = (scheduled: boolean): Promise<T | null> => {
    if (running) {
      options.onSkip();
      return Promise.resolve(null);
    }
    const current = options.run(scheduled).finally(() => {
      running = null;
    });
    running = current;
    return current;
  };

  const schedule = (): void => {
    if (stopped || options.intervalMs <= 0) return;
    timer = setTimeout(() => {
      start(true).catch(options.onError).finally(schedule);
    }, options.intervalMs);
    timer.unref();
  };
  schedule();

  return {
    runOnce: () => start(false),
    stop: async () => {
      stopped = true;
      if (timer) clearTimeout(timer);
      await running?.catch(() => {});
    },
  };
};
