// Where a lab run spent its time, read from the serial log: the guest's scenario logs each phase
// it enters (`lab: phase NAME (uptime N s)`) and each marker it sets (`lab: marked NAME`), and
// the console stamps every line with the Dom0's uptime. Pure: the callers read the file.

export interface GuestStep {
  /** `phase install`, `marked started`, ... */
  name: string;
  /** Seconds since the Dom0 kernel started. */
  uptime: number;
}

// "[   18.223153] sh[146]: lab: phase boot (uptime 18.2 s)" / "[   12.150346] sh[140]: lab: marked started"
const STEP = /^\[\s*(\d+\.\d+)\]\s+\S+:\s+lab: (phase \S+|marked \S+)/;

export function guestSteps(serial: string): GuestStep[] {
  const steps: GuestStep[] = [];
  for (const line of serial.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '').split('\n')) {
    const match = STEP.exec(line.trim());
    if (match) steps.push({ name: match[2]!, uptime: Number(match[1]) });
  }
  return steps;
}

/** The guest's last phase or marker, for an error that must say where a run stopped. */
export function lastGuestStep(serial: string): string {
  const steps = guestSteps(serial);
  const last = steps[steps.length - 1];
  return last ? `${last.name} at uptime ${last.uptime.toFixed(1)} s` : 'none yet (still booting: no scenario line on the console)';
}

export interface PhaseTime {
  name: string;
  seconds: number;
}

/**
 * Seconds per phase: `dom0-boot` (kernel start to the scenario's start), `program-start` (to the
 * first phase of the guest program), then each phase up to the next one;
 * the last phase runs to the `done` marker, when there is one.
 */
export function phaseTimes(serial: string): PhaseTime[] {
  const steps = guestSteps(serial);
  const started = steps.find((step) => step.name === 'marked started');
  const done = steps.find((step) => step.name === 'marked done');
  const phases = steps.filter((step) => step.name.startsWith('phase '));
  const times: PhaseTime[] = [];
  if (started) times.push({ name: 'dom0-boot', seconds: started.uptime });
  let previous = started?.uptime ?? 0;
  let previousName = 'program-start';
  for (const phase of phases) {
    if (phase.uptime >= previous) times.push({ name: previousName, seconds: phase.uptime - previous });
    previous = phase.uptime;
    previousName = phase.name.slice('phase '.length);
  }
  if (done && done.uptime >= previous) times.push({ name: previousName, seconds: done.uptime - previous });
  return times;
}

/** `dom0-boot 12.1 s, program-start 5.5 s, install 7.2 s, …` */
export function describePhaseTimes(times: PhaseTime[]): string {
  return times.map((time) => `${time.name} ${time.seconds.toFixed(1)} s`).join(', ');
}
