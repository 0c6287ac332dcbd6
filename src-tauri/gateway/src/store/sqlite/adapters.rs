//! Adapters in SQLite: the `adapters` table (each local key's hash, never the key).

use rusqlite::params;

use super::Database;
use crate::store::{AdapterRow, AdapterStore, StoreError};

impl AdapterStore for Database {
    fn adapters(&self) -> Result<Vec<AdapterRow>, StoreError> {
        self.query(
            "SELECT create_time, name, provider_id, model_id, base_url, strategy, key_hash,
                    key_hint
             FROM adapters ORDER BY create_time",
            [],
            |row| {
                Ok(AdapterRow {
                    create_time: row.get(0)?,
                    name: row.get(1)?,
                    provider_id: row.get(2)?,
                    model_id: row.get(3)?,
                    base_url: row.get(4)?,
                    strategy: row.get(5)?,
                    key_hash: row.get(6)?,
                    key_hint: row.get(7)?,
                })
            },
        )
    }

    /// Inserts an adapter. `create_time` identifies it, so when two adapters are created in the
    /// same millisecond the later one moves to the next free millisecond; the stored value is
    /// returned.
    fn insert_adapter(&self, row: &AdapterRow) -> Result<i64, StoreError> {
        let conn = self.conn();
        let latest: Option<i64> = conn
            .query_row("SELECT MAX(create_time) FROM adapters", [], |r| r.get(0))
            .map_err(|e| self.wrap(e))?;
        let create_time = match latest {
            Some(latest) if latest >= row.create_time => latest + 1,
            _ => row.create_time,
        };
        conn.execute(
            "INSERT INTO adapters (create_time, name, provider_id, model_id, base_url, strategy,
                 key_hash, key_hint)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                create_time,
                row.name,
                row.provider_id,
                row.model_id,
                row.base_url,
                row.strategy,
                row.key_hash,
                row.key_hint
            ],
        )
        .map_err(|e| self.wrap(e))?;
        Ok(create_time)
    }

    /// Deletes an adapter; returns whether it existed.
    fn delete_adapter(&self, create_time: i64) -> Result<bool, StoreError> {
        self.execute("DELETE FROM adapters WHERE create_time = ?1", [create_time])
            .map(|n| n > 0)
    }
}
