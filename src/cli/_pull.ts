/** What `launch` and `image pull` share: the verification flags and the download's progress line. */
import type { OptionSpec } from "./spec.ts";
import { formatSize } from "./_size.ts";
import type { PullProgress } from "../vm/images.ts";

/** `--sha256 HEX` and `--insecure-no-checksum`. */
export const verifyFlagOptions: Record<string, OptionSpec> = {
  sha256: {
    type: "string",
    value: "HEX",
    description: "the download's SHA-256 (else SHA256SUMS/SHA512SUMS beside it are read)",
  },
  "insecure-no-checksum": {
    type: "boolean",
    description: "use a download no checksum vouches for (never needed with --sha256)",
  },
};

/** A pull's progress as one line: what is fetched and how much of it has arrived. */
export function pullProgressLine(progress: PullProgress): string {
  if (progress.step === "checksums") return `fetching ${progress.url}`;
  if (progress.step === "verify") return `verifying ${progress.name} (${progress.algorithm})`;
  const { name, received, total, resumedFrom } = progress;
  const got = formatSize(received);
  const of = total ? ` of ${formatSize(total)} (${Math.floor((received / total) * 100)}%)` : "";
  const resumed = resumedFrom > 0 ? `, resumed at ${formatSize(resumedFrom)}` : "";
  return `downloading ${name}: ${got}${of}${resumed}`;
}
