/**
 * The state database's schema as a list of forward migrations, and bringing a database to it:
 * which version a file has (a maqet database is version 1), and the pending migrations, applied
 * in one transaction after a backup of the file. `schema_version` holds the highest applied
 * version; a database newer than this program is refused rather than guessed at.
 */
import type { DatabaseSync } from "node:sqlite";
import { QvmError } from "../errors.ts";
import { faultOf, translateFault } from "./_faults.ts";

/** One forward step; `sql` runs inside the migration's transaction. */
export interface Migration {
  version: number;
  description: string;
  sql: string;
}

/** Every migration, oldest first. Append; never edit a released step. */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: "vm_instances with maqet's columns and indexes",
    sql: `
      CREATE TABLE vm_instances (
        id TEXT PRIMARY KEY,
        name TEXT UNIQUE NOT NULL,
        config_path TEXT,
        config_data TEXT NOT NULL CHECK (json_valid(config_data)),
        status TEXT NOT NULL DEFAULT 'created',
        pid INTEGER,
        qmp_socket_path TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
      );
      CREATE INDEX idx_vm_status ON vm_instances(status);
      CREATE INDEX idx_vm_pid ON vm_instances(pid);
    `,
  },
  {
    version: 2,
    description: "how a VM last ended, and the files qvm created for it",
    sql: `
      ALTER TABLE vm_instances ADD COLUMN stop_reason TEXT;
      ALTER TABLE vm_instances ADD COLUMN created_files TEXT NOT NULL DEFAULT '[]'
        CHECK (json_valid(created_files));
    `,
  },
  {
    version: 3,
    description:
      "one partial index of the VMs that claim a process, for the status and pid indexes",
    // No query reads idx_vm_status or idx_vm_pid, yet every status change rewrote them (update
    // status at 100,000 VMs ~40 → ~23 µs without them, paired). What a listing does want is the
    // few VMs that claim a process (the ones it must check): the partial index holds just those
    // and is written only when a VM enters or leaves that set.
    sql: `
      DROP INDEX IF EXISTS idx_vm_status;
      DROP INDEX IF EXISTS idx_vm_pid;
      CREATE INDEX idx_vm_live ON vm_instances(id)
        WHERE pid IS NOT NULL OR status IN ('starting', 'running', 'stopping');
    `,
  },
  {
    version: 4,
    description: "the start time of the recorded pid, and a token that every change of a VM renews",
    // pid_start: when the QEMU at `pid` started (/proc/<pid>/stat, clock ticks since boot), read
    // when qvm verified the process as the VM's: the same pid with the same start time is the
    // same process, so `ls` need not verify it again. vm_generation: a random token each write to
    // vm_instances renews (by trigger, so in the same transaction, whoever writes): `ls --json`
    // keeps its output for a token and prints it again while the token is the same.
    sql: `
      ALTER TABLE vm_instances ADD COLUMN pid_start INTEGER;
      CREATE TABLE vm_generation (token BLOB NOT NULL);
      INSERT INTO vm_generation (token) VALUES (randomblob(16));
      CREATE TRIGGER vm_generation_insert AFTER INSERT ON vm_instances
        BEGIN UPDATE vm_generation SET token = randomblob(16); END;
      CREATE TRIGGER vm_generation_update AFTER UPDATE ON vm_instances
        BEGIN UPDATE vm_generation SET token = randomblob(16); END;
      CREATE TRIGGER vm_generation_delete AFTER DELETE ON vm_instances
        BEGIN UPDATE vm_generation SET token = randomblob(16); END;
    `,
  },
];

/** The version a fully migrated database has. */
export const LATEST_VERSION: number = MIGRATIONS[MIGRATIONS.length - 1].version;

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
