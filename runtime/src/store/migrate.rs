//! Creating and upgrading weft's tables.
//!
//! Applied versions are kept in `_sqlx_migrations`, as sqlx's migrator keeps them (same columns,
//! same SHA-384 checksums of the scripts), so databases written by earlier weft versions, which
//! migrated through sqlx, are read and upgraded as they are.

use super::db::{self, Conn, Pool};
use super::{Backend, StoreError};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// One schema version: its SQL for each database, with the SHA-384 of that SQL in hex.
struct Migration {
    version: i64,
    description: &'static str,
    sqlite: Script,
    postgres: Script,
}

struct Script {
    sql: &'static str,
    checksum: &'static str,
}

impl Migration {
    fn script(&self, backend: Backend) -> &Script {
        match backend {
            Backend::Sqlite => &self.sqlite,
            Backend::Postgres => &self.postgres,
        }
    }
}

/// The schema versions this build knows; a database at a later version is refused.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "history",
        sqlite: Script {
            sql: include_str!("migrations/0001_history.sql"),
            checksum: "9abbe044c7462fb2202cda1c1749ea7ed354c7c9b4d6ae6d6bce81a07b3a0ea66be32b40daeccc1472e9563a754ee13f",
        },
        postgres: Script {
            sql: include_str!("migrations/0001_history.sql"),
            checksum: "9abbe044c7462fb2202cda1c1749ea7ed354c7c9b4d6ae6d6bce81a07b3a0ea66be32b40daeccc1472e9563a754ee13f",
        },
    },
    Migration {
        version: 2,
        description: "deployments",
        sqlite: Script {
            sql: include_str!("migrations/0002_deployments.sql"),
            checksum: "337178628bd164027d4a89fa4c7f0a7db228c3b8490f2bbc3e570ba8a9eef23cd23a47c8773b1627e9b1a209921e99d5",
        },
        postgres: Script {
            sql: include_str!("migrations/0002_deployments.sql"),
            checksum: "337178628bd164027d4a89fa4c7f0a7db228c3b8490f2bbc3e570ba8a9eef23cd23a47c8773b1627e9b1a209921e99d5",
        },
    },
    Migration {
        version: 3,
        description: "pipelines",
        sqlite: Script {
            sql: include_str!("migrations/0003_pipelines.sql"),
            checksum: "c5003e01942e6b0e5944e999de4cddb4919f6e1c1b18052bcc3bd45861333dd434ac3524cfad62519cd303f81ed18ca8",
        },
        postgres: Script {
            sql: include_str!("migrations/0003_pipelines.sql"),
            checksum: "c5003e01942e6b0e5944e999de4cddb4919f6e1c1b18052bcc3bd45861333dd434ac3524cfad62519cd303f81ed18ca8",
        },
    },
    Migration {
        version: 4,
        description: "subflows",
        sqlite: Script {
            sql: include_str!("migrations/0004_subflows.sql"),
            checksum: "08d95d4c983943e1baf290f63b574f293646acf36670b350deef2cea314337c987b572aca0f1cf860abf4eec333d9519",
        },
        postgres: Script {
            sql: include_str!("migrations/0004_subflows.sql"),
            checksum: "08d95d4c983943e1baf290f63b574f293646acf36670b350deef2cea314337c987b572aca0f1cf860abf4eec333d9519",
        },
    },
    Migration {
        version: 5,
        description: "task lifecycle",
        sqlite: Script {
            sql: include_str!("migrations/0005_task_lifecycle.sql"),
            checksum: "3fea97233447f5bd1b3007c237f95cf15571992f3c96d2e7eb0771b88e9496cbb841ab07946eb5e45ad7d6e436cd5034",
        },
        postgres: Script {
            sql: include_str!("migrations/0005_task_lifecycle.sql"),
            checksum: "3fea97233447f5bd1b3007c237f95cf15571992f3c96d2e7eb0771b88e9496cbb841ab07946eb5e45ad7d6e436cd5034",
        },
    },
    Migration {
        version: 6,
        description: "compact keys",
        sqlite: Script {
            sql: concat!(
            include_str!("migrations/0006_compact_keys.sqlite.sql"),
            include_str!("migrations/0006_run_logs.sql")
        ),
            checksum: "af3fc999d89f36b599d33fbfc3616c62073b9c55027cb94449479090701fa72d6f2777e9282dc5fdad11255815d19dd6",
        },
        postgres: Script {
            sql: concat!(
            include_str!("migrations/0006_compact_keys.postgres.sql"),
            include_str!("migrations/0006_run_logs.sql")
        ),
            checksum: "db4fe2377acd5aac99ad31a4288a1baa3ddc75d4b8214a415ae02d1a1fb84c73711ff9f57e253fcdb2fe9e102ad8d399",
        },
    },
    Migration {
        version: 7,
        description: "cancellation",
        sqlite: Script {
            sql: include_str!("migrations/0007_cancellation.sql"),
            checksum: "c6f5cd3d30d0ec5ec60ae4ed83a6d1cc14eee4f3ec4c592742c786fca1e6751288d2bb99bce4dfc2cbbd317e8e579b08",
        },
        postgres: Script {
            sql: include_str!("migrations/0007_cancellation.sql"),
            checksum: "c6f5cd3d30d0ec5ec60ae4ed83a6d1cc14eee4f3ec4c592742c786fca1e6751288d2bb99bce4dfc2cbbd317e8e579b08",
        },
    },
    Migration {
        version: 8,
        description: "browse indexes",
        sqlite: Script {
            sql: include_str!("migrations/0008_browse_indexes.sqlite.sql"),
            checksum: "3d887587006b655e70b107607c7813c701530ba66ea6f7d09b748542900e88f54a808640511318716e30b0bd0897acd8",
        },
        postgres: Script {
            sql: include_str!("migrations/0008_browse_indexes.postgres.sql"),
            checksum: "5e7026655902dd88bca51c8042191fd8060707ba943309f7989b41a5c8cfd5948cce2129a7805983e1bf4681e0864391",
        },
    },
    Migration {
        version: 9,
        description: "run counts and log rows",
        sqlite: Script {
            sql: concat!(
            include_str!("migrations/0009_run_counts.sqlite.sql"),
            include_str!("migrations/0009_run_counts_backfill.sql"),
            include_str!("migrations/0009_run_logs.sql")
        ),
            checksum: "c00aee4615ace033efe8f0eec5d68d724858dc93b6cb0872c8b64dc222844b9864fd8e2b84a3e82105eb3699832b9076",
        },
        postgres: Script {
            sql: concat!(
            include_str!("migrations/0009_run_counts.postgres.sql"),
            include_str!("migrations/0009_run_counts_backfill.sql"),
            include_str!("migrations/0009_run_logs.sql")
        ),
            checksum: "c2f85050fde144adb2e04aa319c2b22f6622f4dde7ae86078873c52cfd11421213499241fa026ffcf43544bd5eb0300b",
        },
    },
    Migration {
        version: 10,
        description: "leases",
        sqlite: Script {
            sql: include_str!("migrations/0010_leases.sql"),
            checksum: "dcf3287e6a7a3d701add45bc109ebce030fa07038513eb0c662ebfd91e970ca562ec12c33150cf825ae4eb66471df44c",
        },
        postgres: Script {
            sql: include_str!("migrations/0010_leases.sql"),
            checksum: "dcf3287e6a7a3d701add45bc109ebce030fa07038513eb0c662ebfd91e970ca562ec12c33150cf825ae4eb66471df44c",
        },
    },
    Migration {
        version: 11,
        description: "work pools",
        sqlite: Script {
            sql: include_str!("migrations/0011_work_pools.sql"),
            checksum: "106072b314d42dc2465b82196bb50e5e77fe9b0ccbc95f5c548a85e5c94c02683fc541f83d6dfaf63ddf21d3bdb4c27b",
        },
        postgres: Script {
            sql: include_str!("migrations/0011_work_pools.sql"),
            checksum: "106072b314d42dc2465b82196bb50e5e77fe9b0ccbc95f5c548a85e5c94c02683fc541f83d6dfaf63ddf21d3bdb4c27b",
        },
    },
    Migration {
        version: 12,
        description: "run queue",
        sqlite: Script {
            sql: include_str!("migrations/0012_run_queue.sql"),
            checksum: "d3a1717a82fa2effdcee65be9590ca852daf581c0c91f1505064babcebb2dbd10256fafa74392a353b847234d609ed7d",
        },
        postgres: Script {
            sql: include_str!("migrations/0012_run_queue.sql"),
            checksum: "d3a1717a82fa2effdcee65be9590ca852daf581c0c91f1505064babcebb2dbd10256fafa74392a353b847234d609ed7d",
        },
    },];

pub(super) fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Refuses a database from a newer weft, then applies the missing migrations.
pub(super) async fn migrate(
    pool: &Pool,
    backend: Backend,
    shown: &str,
    create: bool,
) -> Result<(), StoreError> {
    // Before anything could alter it: a missing table means a new database.
    let found: Option<Option<i64>> =
        db::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(pool)
            .await
            .ok();
    if found.is_none() && !create {
        return Err(StoreError::NoHistory {
            url: shown.to_owned(),
        });
    }
    let found = found.flatten().unwrap_or(0);
    if found > latest_version() {
        return Err(StoreError::SchemaTooNew {
            url: shown.to_owned(),
            found,
            supported: latest_version(),
        });
    }
    if found == latest_version() {
        return Ok(());
    }
    let mut tries = 0;
    loop {
        // On a connection of its own, closed after each attempt: on PostgreSQL it holds the
        // migration lock (a session's advisory lock) and an attempt's failed transaction, which
        // a pooled connection would keep for every later attempt of this process or another.
        let attempt = async {
            let mut conn = pool.acquire().await.map_err(|e| e.to_string())?;
            let outcome = locked(&mut conn, backend).await;
            let _ = tokio::time::timeout(Duration::from_secs(1), conn.close()).await;
            outcome
        };
        match attempt.await {
            Ok(()) => return Ok(()),
            // Another process migrating the same file at once: its work is ours on retry.
            Err(_) if tries < 8 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(25 << tries.min(5))).await;
            }
            Err(error) => {
                return Err(StoreError::Migrate {
                    url: shown.to_owned(),
                    error,
                })
            }
        }
    }
}

/// Applies the missing migrations holding PostgreSQL's migration lock, the one sqlx's migrator
/// takes, so weft processes of this version and of earlier ones never migrate at once.
async fn locked(conn: &mut Conn, backend: Backend) -> Result<(), String> {
    let lock = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => {
            let name: String = db::query_scalar("SELECT current_database()::text")
                .fetch_one(&mut *conn)
                .await
                .map_err(|e| e.to_string())?;
            Some(lock_id(&name))
        }
    };
    if let Some(id) = lock {
        db::query("SELECT pg_advisory_lock($1)")
            .bind(id)
            .execute(&mut *conn)
            .await
            .map_err(|e| e.to_string())?;
    }
    let outcome = apply_missing(conn, backend).await;
    if let Some(id) = lock {
        let _ = db::query("SELECT pg_advisory_unlock($1)")
            .bind(id)
            .execute(&mut *conn)
            .await;
    }
    outcome
}

/// sqlx's migration lock id for a PostgreSQL database.
fn lock_id(database: &str) -> i64 {
    0x3d32_ad9e * i64::from(crc32(database.as_bytes()))
}

/// CRC-32 (ISO-HDLC, as zlib's), bit by bit: run once per store opened.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

async fn apply_missing(conn: &mut Conn, backend: Backend) -> Result<(), String> {
    let e = |e: db::Error| e.to_string();
    conn.execute_batch(match backend {
        Backend::Sqlite => {
            "CREATE TABLE IF NOT EXISTS _sqlx_migrations (version BIGINT PRIMARY KEY, \
             description TEXT NOT NULL, installed_on TIMESTAMP NOT NULL DEFAULT \
             CURRENT_TIMESTAMP, success BOOLEAN NOT NULL, checksum BLOB NOT NULL, \
             execution_time BIGINT NOT NULL)"
        }
        Backend::Postgres => {
            "CREATE TABLE IF NOT EXISTS _sqlx_migrations (version BIGINT PRIMARY KEY, \
             description TEXT NOT NULL, installed_on TIMESTAMPTZ NOT NULL DEFAULT now(), \
             success BOOLEAN NOT NULL, checksum BYTEA NOT NULL, execution_time BIGINT NOT NULL)"
        }
    })
    .await
    .map_err(e)?;
    let dirty: Option<i64> = db::query_scalar(
        "SELECT version FROM _sqlx_migrations WHERE success = false ORDER BY version LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(e)?;
    if let Some(v) = dirty {
        return Err(format!(
            "migration {v} was left partly applied by an earlier attempt; repair the database \
             by hand or point WEFT_DATABASE_URL elsewhere"
        ));
    }
    let applied: HashMap<i64, Vec<u8>> =
        db::query("SELECT version, checksum FROM _sqlx_migrations")
            .fetch_all(&mut *conn)
            .await
            .map_err(e)?
            .iter()
            .map(|r| Ok((r.try_get("version")?, r.try_get("checksum")?)))
            .collect::<Result<_, db::Error>>()
            .map_err(e)?;
    for m in MIGRATIONS {
        let script = m.script(backend);
        match applied.get(&m.version) {
            Some(sum) if hex(sum) != script.checksum => {
                return Err(format!(
                    "migration {} ({}) recorded in the database differs from this weft's; it \
                     was written by another build of weft",
                    m.version, m.description
                ))
            }
            Some(_) => {}
            None => apply(conn, backend, m, script).await?,
        }
    }
    Ok(())
}

/// One migration and its record, in one transaction.
async fn apply(conn: &mut Conn, backend: Backend, m: &Migration, s: &Script) -> Result<(), String> {
    let started = Instant::now();
    let (begin, checksum) = match backend {
        Backend::Sqlite => ("BEGIN IMMEDIATE", format!("X'{}'", s.checksum)),
        Backend::Postgres => ("BEGIN", format!("decode('{}', 'hex')", s.checksum)),
    };
    // Versions, descriptions and checksums are this file's constants, quoted by hand.
    let batch = format!(
        "{begin};\n{}\n;\nINSERT INTO _sqlx_migrations (version, description, success, checksum, \
         execution_time) VALUES ({}, '{}', TRUE, {checksum}, -1);\nCOMMIT;",
        s.sql, m.version, m.description
    );
    conn.execute_batch(&batch)
        .await
        .map_err(|e| format!("migration {} ({}): {e}", m.version, m.description))?;
    let nanos = i64::try_from(started.elapsed().as_nanos()).unwrap_or(i64::MAX);
    db::query("UPDATE _sqlx_migrations SET execution_time = $1 WHERE version = $2")
        .bind(nanos)
        .bind(m.version)
        .execute(&mut *conn)
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The checksums are sqlx's: SHA-384 of each script, so earlier weft's records match.
    #[test]
    fn checksums_are_sha384_of_the_scripts() {
        use sha2::{Digest, Sha384};
        for m in MIGRATIONS {
            for script in [&m.sqlite, &m.postgres] {
                let sum = hex(&Sha384::digest(script.sql.as_bytes()));
                assert_eq!(script.checksum, sum, "checksum of migration {}", m.version);
            }
        }
        assert!(MIGRATIONS.windows(2).all(|w| w[0].version < w[1].version));
    }

    #[test]
    fn lock_id_is_sqlx_s() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(lock_id("test"), 0x3d32_ad9e * i64::from(crc32(b"test")));
    }
}
