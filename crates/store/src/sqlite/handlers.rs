//! Handler instances: the registry's memory of them.

use serde_json::Value;
use sqlx::sqlite::SqliteRow;

use super::SqliteStore;
use super::codec::{db_err, from_ms, get, ms, parse_json, u32_col};
use crate::{HandlerInstance, StoreError, StoreResult};

pub(super) async fn upsert(store: &SqliteStore, h: &HandlerInstance) -> StoreResult<()> {
    let ctx = "cannot store a handler instance";
    let methods = serde_json::to_string(&h.methods)
        .map_err(|e| StoreError::Backend { context: ctx.to_string(), source: Box::new(e) })?;
    let mut tx = store.write(ctx).await?;
    sqlx::query(
        "INSERT INTO handler_instances (handler_id, instance_id, protocol, address, methods, capacity, \
                                        connected, registered_at, last_seen, successes, failures, meta) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) \
         ON CONFLICT (handler_id, instance_id) DO UPDATE SET \
             protocol = excluded.protocol, address = excluded.address, methods = excluded.methods, \
             capacity = excluded.capacity, connected = excluded.connected, \
             registered_at = excluded.registered_at, last_seen = excluded.last_seen, \
             successes = excluded.successes, failures = excluded.failures, meta = excluded.meta",
    )
    .bind(&h.handler_id)
    .bind(&h.instance_id)
    .bind(&h.protocol)
    .bind(&h.address)
    .bind(methods)
    .bind(h.capacity)
    .bind(h.connected)
    .bind(ms(h.registered_at))
    .bind(ms(h.last_seen))
    .bind(i64::try_from(h.successes).unwrap_or(i64::MAX))
    .bind(i64::try_from(h.failures).unwrap_or(i64::MAX))
    .bind(h.meta.to_string())
    .execute(&mut *tx)
    .await
    .map_err(db_err(ctx))?;
    tx.commit().await.map_err(db_err(ctx))
}

fn from_row(row: &SqliteRow) -> StoreResult<HandlerInstance> {
    let methods: String = get(row, "methods")?;
    let methods: Vec<String> = serde_json::from_str(&methods)
        .map_err(|e| StoreError::Corrupt(format!("stored handler methods: {e}")))?;
    let meta: String = get(row, "meta")?;
    let count = |col: &str| -> StoreResult<u64> {
        let v: i64 = get(row, col)?;
        u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("{col} {v} is negative")))
    };
    Ok(HandlerInstance {
        handler_id: get(row, "handler_id")?,
        instance_id: get(row, "instance_id")?,
        protocol: get(row, "protocol")?,
        address: get(row, "address")?,
        methods,
        capacity: u32_col(get(row, "capacity")?, "capacity")?,
        connected: get(row, "connected")?,
        registered_at: from_ms(get(row, "registered_at")?)?,
        last_seen: from_ms(get(row, "last_seen")?)?,
        successes: count("successes")?,
        failures: count("failures")?,
        meta: {
            let v: Value = parse_json(&meta, "stored handler meta")?;
            v
        },
    })
}

pub(super) async fn list(store: &SqliteStore) -> StoreResult<Vec<HandlerInstance>> {
    let rows = sqlx::query(
        "SELECT handler_id, instance_id, protocol, address, methods, capacity, connected, registered_at, \
                last_seen, successes, failures, meta \
         FROM handler_instances ORDER BY handler_id, instance_id",
    )
    .fetch_all(&store.reader)
    .await
    .map_err(db_err("cannot list handler instances"))?;
    rows.iter().map(from_row).collect()
}
