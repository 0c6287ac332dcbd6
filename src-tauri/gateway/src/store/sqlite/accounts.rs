//! Subscription accounts in SQLite: the `accounts` table (nothing secret; the tokens are in
//! the secret store).

use rusqlite::params;

use super::Database;
use crate::store::{AccountRow, AccountStore, StoreError};

impl AccountStore for Database {
    /// Every subscription account, oldest first.
    fn accounts(&self) -> Result<Vec<AccountRow>, StoreError> {
        self.account_rows(None)
    }

    fn account(&self, id: &str) -> Result<Option<AccountRow>, StoreError> {
        Ok(self.account_rows(Some(id))?.pop())
    }

    /// Inserts or replaces an account (a new login, or a re-login of the same account).
    fn put_account(&self, row: &AccountRow) -> Result<(), StoreError> {
        self.execute(
            "INSERT OR REPLACE INTO accounts (id, kind, provider_id, label, email, account_id,
                 plan, project, created_at, refreshed_at, expires_at, last_error, needs_login)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            params![
                row.id,
                row.kind,
                row.provider_id,
                row.label,
                row.email,
                row.account_id,
                row.plan,
                row.project,
                row.created_at,
                row.refreshed_at,
                row.expires_at,
                row.last_error,
                row.needs_login
            ],
        )
        .map(drop)
    }

    /// Deletes an account; returns whether it existed.
    fn delete_account(&self, id: &str) -> Result<bool, StoreError> {
        self.execute("DELETE FROM accounts WHERE id = ?1", [id])
            .map(|n| n > 0)
    }
}

impl Database {
    /// One account (`Some(id)`) or all of them.
    fn account_rows(&self, id: Option<&str>) -> Result<Vec<AccountRow>, StoreError> {
        self.query(
            "SELECT id, kind, provider_id, label, email, account_id, plan, project,
                    created_at, refreshed_at, expires_at, last_error, needs_login
             FROM accounts WHERE (?1 IS NULL OR id = ?1)
             ORDER BY created_at, id",
            [id],
            |row| {
                Ok(AccountRow {
                    id: row.get(0)?,
                    kind: row.get(1)?,
                    provider_id: row.get(2)?,
                    label: row.get(3)?,
                    email: row.get(4)?,
                    account_id: row.get(5)?,
                    plan: row.get(6)?,
                    project: row.get(7)?,
                    created_at: row.get(8)?,
                    refreshed_at: row.get(9)?,
                    expires_at: row.get(10)?,
                    last_error: row.get(11)?,
                    needs_login: row.get(12)?,
                })
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::scratch_db;

    #[test]
    fn accounts_round_trip_and_replace() {
        let db = scratch_db("accounts");
        assert!(db.accounts().unwrap().is_empty());
        let mut row = AccountRow {
            id: "claude-ada".into(),
            kind: "claude".into(),
            provider_id: "claude-account".into(),
            label: "ada@example.com".into(),
            email: Some("ada@example.com".into()),
            account_id: Some("u-1".into()),
            plan: None,
            project: None,
            created_at: 5,
            refreshed_at: Some(5),
            expires_at: Some(3_600_005),
            last_error: None,
            needs_login: false,
        };
        db.put_account(&row).unwrap();
        row.needs_login = true;
        row.last_error = Some("refresh refused".into());
        db.put_account(&row).unwrap();
        assert_eq!(db.accounts().unwrap(), vec![row.clone()]);
        assert_eq!(db.account("claude-ada").unwrap(), Some(row));
        assert!(db.delete_account("claude-ada").unwrap());
        assert!(!db.delete_account("claude-ada").unwrap());
        assert_eq!(db.account("claude-ada").unwrap(), None);
    }
}
