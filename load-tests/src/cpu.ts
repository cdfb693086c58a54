import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** CPU seconds (user + system) a process has used, from /proc; 0 where /proc is not there. */
export const cpuSeconds = (pid: number): number => {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
};

export const pgrep = (...args: string[]): number[] => {
  try {
    return execFileSync('pgrep', args, { encoding: 'utf8' }).trim().split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
};

/** The processes of this name (redis-server, postgres: every backend and helper of the server). */
export const pidsOf = (name: string): number[] => pgrep('-x', name);

/** CPU seconds used so far by every process of this name. */
export const cpuOf = (name: string): number => pidsOf(name).reduce((sum, pid) => sum + cpuSeconds(pid), 0);

/** CPU seconds this process has used. */
export const ownCpu = (): number => {
  const own = process.cpuUsage();
  return (own.user + own.system) / 1e6;
};
