//! The PostgreSQL half of the schema history (`store::migrations` holds
//! both halves): the same numbered steps, recorded in the same
//! `schema_migrations` table, applied in one transaction.
//!
//! Agents starting at once on one database take turns: the transaction first
//! takes an advisory lock keyed by the schema it migrates, so the second
//! agent waits, then finds every step recorded. The lock belongs to the
//! transaction, so a crashed agent cannot leave it held.

use std::collections::BTreeSet;

use deadpool_postgres::ClientWrapper;

use crate::store::StoreError;
use crate::store::migrations::{MIGRATIONS, latest_version};

/// The first half of the advisory lock key: "omm_" in ASCII, so our lock
/// cannot be mistaken for another program's.
const LOCK_SPACE: i32 = 0x6f6d_6d5f;

/// Bring the schema up to [`latest_version`]; a no-op when it already is.
/// A database recording a newer version is refused and left untouched.
pub(super) async fn migrate(client: &mut ClientWrapper) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext(coalesce(current_schema(), '')))",
        &[&LOCK_SPACE],
    )
    .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    BIGINT      NOT NULL PRIMARY KEY,
             name       TEXT        NOT NULL,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let applied = tx
        .query("SELECT version FROM schema_migrations", &[])
        .await?
        .iter()
        .map(|row| row.try_get::<_, i64>(0))
        .collect::<Result<BTreeSet<i64>, _>>()?;
    let known = latest_version();
    if let Some(&found) = applied.last()
        && found > known
    {
        // Dropping the transaction rolls it back: nothing was written.
        return Err(StoreError::NewerSchema { found, known });
    }
    for migration in MIGRATIONS {
        if applied.contains(&migration.version) {
            continue;
        }
        tx.batch_execute(migration.postgres).await.map_err(|e| {
            StoreError::Postgres(format!(
                "migration {} ({}) failed: {}",
                migration.version,
                migration.name,
                super::describe(&e)
            ))
        })?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[&migration.version, &migration.name],
        )
        .await?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "applied state database migration (PostgreSQL)"
        );
    }
    tx.commit().await?;
    Ok(())
}
