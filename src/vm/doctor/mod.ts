/** `qvm doctor`'s checks: each returns findings (data); the CLI only renders them. */
export { diagnose } from "./diagnose.ts";
export type { Finding, FindingStatus } from "./finding.ts";
