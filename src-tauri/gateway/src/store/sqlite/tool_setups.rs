//! Tool set-ups in SQLite: the `tool_setups` table, what was written into other programs'
//! config files and how to undo it.

use rusqlite::params;

use super::Database;
use crate::store::{StoreError, ToolSetupRow, ToolSetupStore};

impl ToolSetupStore for Database {
    /// The set-ups not undone yet, oldest first; for one tool, or all with `None`.
    fn active_tool_setups(&self, tool: Option<&str>) -> Result<Vec<ToolSetupRow>, StoreError> {
        self.query(
            "SELECT id, tool, path, adapter, previous, created_file, backup_path,
                    written_sha256, applied_at, undone_at
             FROM tool_setups
             WHERE undone_at IS NULL AND (?1 IS NULL OR tool = ?1)
             ORDER BY id",
            [tool],
            |row| {
                Ok(ToolSetupRow {
                    id: row.get(0)?,
                    tool: row.get(1)?,
                    path: row.get(2)?,
                    adapter: row.get(3)?,
                    previous: row.get(4)?,
                    created_file: row.get(5)?,
                    backup_path: row.get(6)?,
                    written_sha256: row.get(7)?,
                    applied_at: row.get(8)?,
                    undone_at: row.get(9)?,
                })
            },
        )
    }

    /// Records one apply's write into a tool's file; returns its id.
    fn insert_tool_setup(&self, row: &ToolSetupRow) -> Result<i64, StoreError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO tool_setups (tool, path, adapter, previous, created_file, backup_path,
                 written_sha256, applied_at, undone_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                row.tool,
                row.path,
                row.adapter,
                row.previous,
                row.created_file,
                row.backup_path,
                row.written_sha256,
                row.applied_at,
                row.undone_at
            ],
        )
        .map_err(|e| self.wrap(e))?;
        Ok(conn.last_insert_rowid())
    }

    fn mark_tool_setup_undone(&self, id: i64, undone_at: i64) -> Result<(), StoreError> {
        self.execute(
            "UPDATE tool_setups SET undone_at = ?2 WHERE id = ?1",
            params![id, undone_at],
        )
        .map(drop)
    }
}
