//! Providers in SQLite: the `providers`, `credentials`, `routes` and `discovered_models`
//! tables, the routing configuration the registry loads.

use rusqlite::params;

use super::{Database, json_list, to_json_list};
use crate::routing::Limits;
use crate::routing::discovery::{DiscoveryKind, UnknownDiscoveryKind};
use crate::store::{
    CredentialRow, DiscoveredRow, ProviderRow, ProviderStore, RouteRow, StoreError,
};
use flexiproxy_protocol::{Protocol, UnknownProtocol};

impl ProviderStore for Database {
    fn providers(&self) -> Result<Vec<ProviderRow>, StoreError> {
        let rows = self.query(
            "SELECT id, url, protocol, discovery, models, created_at, updated_at
             FROM providers ORDER BY id",
            [],
            |row| {
                Ok((
                    ProviderRow {
                        id: row.get(0)?,
                        url: row.get(1)?,
                        protocol: Protocol::OpenAiChat,
                        discovery: DiscoveryKind::default(),
                        models: json_list(&row.get::<_, String>(4)?),
                        created_at: row.get(5)?,
                        updated_at: row.get(6)?,
                    },
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                ))
            },
        )?;
        let mut providers = Vec::new();
        for (mut provider, protocol, discovery) in rows {
            let unreadable = |column, reason: String| StoreError::Unreadable {
                path: self.path.clone(),
                table: "providers",
                id: provider.id.clone(),
                column,
                reason,
            };
            provider.protocol = protocol
                .parse()
                .map_err(|e: UnknownProtocol| unreadable("protocol", e.to_string()))?;
            provider.discovery = discovery
                .parse()
                .map_err(|e: UnknownDiscoveryKind| unreadable("discovery", e.to_string()))?;
            providers.push(provider);
        }
        Ok(providers)
    }

    /// Inserts or replaces a provider, keeping its original `created_at`.
    fn upsert_provider(&self, row: &ProviderRow) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO providers (id, url, protocol, discovery, models, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (id) DO UPDATE SET url = excluded.url, protocol = excluded.protocol,
                 discovery = excluded.discovery, models = excluded.models,
                 updated_at = excluded.updated_at",
            params![
                row.id,
                row.url,
                row.protocol.as_str(),
                row.discovery.as_str(),
                to_json_list(&row.models),
                row.created_at,
                row.updated_at
            ],
        )
        .map(drop)
    }

    /// Deletes a provider with its credentials and discovered models; returns whether it
    /// existed.
    fn delete_provider(&self, id: &str) -> Result<bool, StoreError> {
        self.execute("DELETE FROM providers WHERE id = ?1", [id])
            .map(|n| n > 0)
    }

    /// Every provider's credentials, in pool order (priority, then age).
    fn credentials(&self) -> Result<Vec<CredentialRow>, StoreError> {
        self.query(
            "SELECT provider_id, id, label, key_ref, key_hint, enabled, priority,
                    max_request_min, max_request_day, max_token_min, created_at
             FROM credentials ORDER BY provider_id, priority, created_at, id",
            [],
            |row| {
                Ok(CredentialRow {
                    provider_id: row.get(0)?,
                    id: row.get(1)?,
                    label: row.get(2)?,
                    key_ref: row.get(3)?,
                    key_hint: row.get(4)?,
                    enabled: row.get(5)?,
                    priority: row.get(6)?,
                    limits: Limits {
                        max_request_min: row.get(7)?,
                        max_request_day: row.get(8)?,
                        max_token_min: row
                            .get::<_, Option<i64>>(9)?
                            .and_then(|n| u64::try_from(n).ok()),
                    },
                    created_at: row.get(10)?,
                })
            },
        )
    }

    /// Inserts or replaces a credential, keeping its original `created_at`.
    fn upsert_credential(&self, row: &CredentialRow) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO credentials (provider_id, id, label, key_ref, key_hint, enabled,
                 priority, max_request_min, max_request_day, max_token_min, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT (provider_id, id) DO UPDATE SET label = excluded.label,
                 key_ref = excluded.key_ref, key_hint = excluded.key_hint,
                 enabled = excluded.enabled, priority = excluded.priority,
                 max_request_min = excluded.max_request_min,
                 max_request_day = excluded.max_request_day,
                 max_token_min = excluded.max_token_min",
            params![
                row.provider_id,
                row.id,
                row.label,
                row.key_ref,
                row.key_hint,
                row.enabled,
                row.priority,
                row.limits.max_request_min,
                row.limits.max_request_day,
                row.limits
                    .max_token_min
                    .map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
                row.created_at
            ],
        )
        .map(drop)
    }

    /// Deletes one credential; returns whether it existed.
    fn delete_credential(&self, provider_id: &str, id: &str) -> Result<bool, StoreError> {
        self.execute(
            "DELETE FROM credentials WHERE provider_id = ?1 AND id = ?2",
            [provider_id, id],
        )
        .map(|n| n > 0)
    }

    fn routes(&self) -> Result<Vec<RouteRow>, StoreError> {
        self.query(
            "SELECT name, strategy, auto, candidates, updated_at FROM routes ORDER BY name",
            [],
            |row| {
                let candidates: String = row.get(3)?;
                Ok(RouteRow {
                    name: row.get(0)?,
                    strategy: row.get(1)?,
                    auto: row.get(2)?,
                    candidates: serde_json::from_str(&candidates).unwrap_or_default(),
                    updated_at: row.get(4)?,
                })
            },
        )
    }

    fn upsert_route(&self, row: &RouteRow) -> Result<(), StoreError> {
        let candidates = serde_json::to_string(&row.candidates).unwrap_or_else(|_| "[]".into());
        self.execute(
            "INSERT INTO routes (name, strategy, auto, candidates, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (name) DO UPDATE SET strategy = excluded.strategy,
                 auto = excluded.auto, candidates = excluded.candidates,
                 updated_at = excluded.updated_at",
            params![row.name, row.strategy, row.auto, candidates, row.updated_at],
        )
        .map(drop)
    }

    fn delete_route(&self, name: &str) -> Result<bool, StoreError> {
        self.execute("DELETE FROM routes WHERE name = ?1", [name])
            .map(|n| n > 0)
    }

    fn discovered(&self) -> Result<Vec<DiscoveredRow>, StoreError> {
        self.query(
            "SELECT provider_id, models, peers, refreshed_at, error FROM discovered_models",
            [],
            |row| {
                Ok(DiscoveredRow {
                    provider_id: row.get(0)?,
                    models: json_list(&row.get::<_, String>(1)?),
                    peers: row.get(2)?,
                    refreshed_at: row.get(3)?,
                    error: row.get(4)?,
                })
            },
        )
    }

    /// Saves a discovery result. A failed refresh keeps the models found last time and only
    /// records the error, so a provider that is briefly down keeps its routes.
    fn save_discovered(&self, row: &DiscoveredRow) -> Result<(), StoreError> {
        let conn = self.conn();
        let result = if row.error.is_some() {
            conn.execute(
                "INSERT INTO discovered_models (provider_id, models, peers, refreshed_at, error)
                 VALUES (?1, '[]', '[]', ?2, ?3)
                 ON CONFLICT (provider_id) DO UPDATE SET refreshed_at = excluded.refreshed_at,
                     error = excluded.error",
                params![row.provider_id, row.refreshed_at, row.error],
            )
        } else {
            conn.execute(
                "INSERT INTO discovered_models (provider_id, models, peers, refreshed_at, error)
                 VALUES (?1, ?2, ?3, ?4, NULL)
                 ON CONFLICT (provider_id) DO UPDATE SET models = excluded.models,
                     peers = excluded.peers, refreshed_at = excluded.refreshed_at, error = NULL",
                params![
                    row.provider_id,
                    to_json_list(&row.models),
                    row.peers,
                    row.refreshed_at
                ],
            )
        };
        // A provider deleted while its discovery ran has nothing to attach the result to.
        match result {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Ok(())
            }
            Err(e) => Err(self.wrap(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::Candidate;
    use crate::store::fixtures::{adapter_row, provider_row};
    use crate::store::sqlite::scratch_db;
    use crate::store::{AdapterRow, AdapterStore};

    #[test]
    fn providers_credentials_routes_and_adapters_round_trip() {
        let db = scratch_db("providers");
        let provider = provider_row("openai", "gpt-4o");
        db.upsert_provider(&provider).unwrap();
        db.upsert_provider(&ProviderRow {
            url: "http://127.0.0.1:2/v1".into(),
            created_at: 5,
            updated_at: 5,
            ..provider
        })
        .unwrap();
        let rows = db.providers().unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].url, "http://127.0.0.1:2/v1");
        assert_eq!(rows[0].models, ["gpt-4o"]);
        assert_eq!(rows[0].created_at, 1, "created_at survives an update");

        let credential = CredentialRow {
            provider_id: "openai".into(),
            id: "k1".into(),
            label: "personal".into(),
            key_ref: Some("store:credential:openai/k1".into()),
            key_hint: Some("sk-a…(20 chars)".into()),
            enabled: true,
            priority: 1,
            limits: Limits {
                max_request_min: Some(3),
                max_request_day: None,
                max_token_min: Some(1000),
            },
            created_at: 2,
        };
        db.upsert_credential(&credential).unwrap();
        assert_eq!(db.credentials().unwrap(), [credential]);

        db.upsert_route(&RouteRow {
            name: "gpt-latest".into(),
            strategy: Some("fill-first".into()),
            auto: false,
            candidates: vec![Candidate {
                provider: "openai".into(),
                model: "gpt-4o".into(),
                priority: 0,
            }],
            updated_at: 3,
        })
        .unwrap();
        assert_eq!(db.routes().unwrap()[0].candidates[0].model, "gpt-4o");

        db.save_discovered(&DiscoveredRow {
            provider_id: "openai".into(),
            models: vec!["a".into(), "b".into()],
            peers: "[]".into(),
            refreshed_at: 4,
            error: None,
        })
        .unwrap();
        db.save_discovered(&DiscoveredRow {
            provider_id: "openai".into(),
            models: vec![],
            peers: "[]".into(),
            refreshed_at: 5,
            error: Some("down".into()),
        })
        .unwrap();
        let found = db.discovered().unwrap();
        assert_eq!(
            found[0].models,
            ["a", "b"],
            "a failed refresh keeps the models"
        );
        assert_eq!(found[0].error.as_deref(), Some("down"));

        let adapter = AdapterRow {
            model_id: Some("gpt-4o".into()),
            ..adapter_row(100, "openai", "h1")
        };
        assert_eq!(db.insert_adapter(&adapter).unwrap(), 100);
        let second = AdapterRow {
            key_hash: "h2".into(),
            provider_id: None,
            model_id: None,
            ..adapter
        };
        assert_eq!(db.insert_adapter(&second).unwrap(), 101, "same ms moves on");
        assert!(db.delete_adapter(100).unwrap());
        assert!(!db.delete_adapter(100).unwrap());
        assert_eq!(db.adapters().unwrap().len(), 1);
        assert!(db.delete_provider("openai").unwrap());
        assert!(
            db.credentials().unwrap().is_empty(),
            "credentials go with it"
        );
        assert!(db.discovered().unwrap().is_empty());
    }

    /// A protocol or discovery kind this version cannot read is an error naming the row and
    /// the column, never a guess (it used to be served as openai_chat with a log line).
    #[test]
    fn an_unreadable_provider_kind_is_an_error_naming_the_row() {
        let db = scratch_db("provider-kinds");
        db.write(|c| {
            c.execute_batch(
                "INSERT INTO providers (id, url, protocol, discovery, models, created_at, updated_at)
                 VALUES ('fine', 'http://x/v1', 'gemini', 'off', '[]', 1, 1),
                        ('odd', 'http://y/v1', 'openai', 'auto', '[]', 1, 1);",
            )
        })
        .unwrap();
        let error = db.providers().unwrap_err();
        let message = error.to_string();
        assert!(
            matches!(&error, StoreError::Unreadable { id, column: "protocol", .. } if id == "odd"),
            "{message}"
        );
        assert!(message.contains("unknown protocol `openai`"), "{message}");
        db.write(|c| {
            c.execute_batch(
                "UPDATE providers SET protocol = 'openai_chat', discovery = 'sometimes'
                 WHERE id = 'odd'",
            )
        })
        .unwrap();
        let error = db.providers().unwrap_err();
        assert!(
            matches!(
                &error,
                StoreError::Unreadable {
                    column: "discovery",
                    ..
                }
            ),
            "{error}"
        );
        db.write(|c| c.execute_batch("UPDATE providers SET discovery = 'ocf' WHERE id = 'odd'"))
            .unwrap();
        let read = db.providers().unwrap();
        assert_eq!(read[0].protocol, Protocol::Gemini);
        assert_eq!(read[1].discovery, DiscoveryKind::Ocf);
    }
}
