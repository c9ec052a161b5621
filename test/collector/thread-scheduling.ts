import fs from 'node:fs';

/** Linux's scheduling policies, as /proc/…/stat numbers them. */
export const SCHED_OTHER = 0;
export const SCHED_IDLE = 5;

/** A thread of this process (default: the calling one): its name, nice value and scheduling policy, from its /proc stat. */
export function threadScheduling(tid?: number): { name: string; nice: number; policy: number } {
  const stat = fs.readFileSync(tid === undefined ? '/proc/thread-self/stat' : `/proc/self/task/${tid}/stat`, 'utf8');
  // "pid (comm) state …": the name may hold spaces and parentheses; the fields after it start at field 3.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { name: stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')), nice: Number(fields[19 - 3]), policy: Number(fields[41 - 3]) };
}

/** Every thread of this process (one that ends while they are read is left out). */
export function processThreads(): { tid: number; name: string; nice: number; policy: number }[] {
  return fs.readdirSync('/proc/self/task').flatMap((tid) => {
    try {
      return [{ tid: Number(tid), ...threadScheduling(Number(tid)) }];
    } catch {
      return [];
    }
  });
}
