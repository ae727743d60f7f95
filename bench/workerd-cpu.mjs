// CPU time of the workerd processes this Node process runs (through Miniflare), for the benches.
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";

/** CPU time (user + system) of the workerd processes Miniflare runs, in ms, from /proc (Linux). */
export function workerdCpuMs() {
  const pids = spawnSync("pgrep", ["-P", String(process.pid), "-f", "workerd"], { encoding: "utf8" }).stdout.trim().split("\n").filter(Boolean);
  let ticks = 0;
  for (const pid of pids) {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    ticks += Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14 and 15 of the line)
  }
  return (ticks * 1000) / 100; // USER_HZ
}
