/**
 * Bringing a state database to this qvm's schema: which version a file has (a maqet database is
 * version 1), and the pending migrations, applied in one transaction after a backup of the file.
 */
import type { DatabaseSync } from "node:sqlite";
import { QvmError } from "../errors.ts";
import { faultOf, translateFault } from "./_faults.ts";
import { LATEST_VERSION, MIGRATIONS } from "./schema.ts";

/** The schema version of an open database: 0 for a new file, 1 for a maqet database. */
export function currentVersion(db: DatabaseSync): number {
  const tables = new Set(
    (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[])
      .map((r) => r.name),
  );
  if (tables.has("schema_version")) {
    const row = db.prepare("SELECT max(version) AS v FROM schema_version").get() as {
      v: number | null;
    };
    return row.v ?? 0;
  }
  // A maqet database has vm_instances but no schema_version: it is our version 1.
  return tables.has("vm_instances") ? 1 : 0;
}

function backupPath(path: string, version: number): string {
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  return `${path}.v${version}-${stamp}.bak`;
}

/** Applies pending migrations in one IMMEDIATE transaction; a failure leaves the old database. */
export function migrate(db: DatabaseSync, path: string): void {
  let version = currentVersion(db);
  if (version > LATEST_VERSION) {
    throw new QvmError(
      `state database ${path} has schema v${version}, newer than this qvm understands (v${LATEST_VERSION})`,
    );
  }
  if (version === LATEST_VERSION) return;
  try {
    if (version > 0 && path !== ":memory:") {
      const backup = backupPath(path, version);
      db.prepare("VACUUM INTO ?").run(backup);
    }
    db.exec("BEGIN IMMEDIATE");
  } catch (err) {
    throw translateFault(err, path);
  }
  try {
    version = currentVersion(db); // another process may have migrated while we waited
    db.exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)");
    for (const step of MIGRATIONS) {
      if (step.version <= version) continue;
      db.exec(step.sql);
      db.prepare("INSERT INTO schema_version (version) VALUES (?)").run(step.version);
    }
    db.exec("COMMIT");
  } catch (err) {
    if (db.isTransaction) db.exec("ROLLBACK");
    if (faultOf(err)) throw translateFault(err, path);
    throw new QvmError(
      `migrating state database ${path} failed (left unchanged): ${(err as Error).message}`,
    );
  }
}
