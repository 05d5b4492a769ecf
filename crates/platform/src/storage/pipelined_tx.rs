//! A transaction whose `BEGIN` travels with its first statements and whose
//! `COMMIT` with its last ones: two round trips fewer than
//! [`diesel_async::AsyncConnection::transaction`], which waits for each.
//!
//! Order is what makes this safe. Statements joined on one `&AsyncPgConnection`
//! are sent in the order they are first polled: each takes the connection's
//! statement-cache lock (a fair mutex), prepares itself if it has to while
//! holding it, and queues its execution in the same poll. [`begin`] and
//! [`commit`] send cached prepared statements too, so they queue behind the
//! statements polled before them: `BEGIN` goes out first and `COMMIT` last.
//! (A simple-protocol `COMMIT` would skip the lock and could overtake a
//! statement still being prepared.) One exception: diesel-async resolves
//! the type ids of custom PostgreSQL types (enums, domains made with
//! `#[derive(SqlType)]`) before taking the lock, so a statement binding
//! one for the first time on a connection could be overtaken. None of our
//! statements binds such a type; one that does must not be joined with
//! `commit`.
//!
//! diesel's transaction manager is told a transaction is open for the whole
//! body, so a connection whose body was dropped halfway (cancelled) is
//! "broken" to the pool and never reused. A body that fails is rolled back
//! (harmless when its pipelined `COMMIT` already ended the transaction:
//! PostgreSQL answers a `COMMIT` in a failed transaction with a rollback).
//! Once `COMMIT` was sent, an error (say, decoding a row of the same
//! pipeline) does not say whether the transaction committed: callers must
//! be safe to try again, as storing notifications is (idempotent by id).

use diesel::connection::{TransactionDepthChange, TransactionManagerStatus};
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::result::{Error, QueryResult};
use diesel_async::{
    AnsiTransactionManager, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection,
    TransactionManager,
};

/// A transaction-control statement, sent as a cached prepared statement.
#[derive(Debug, Clone, Copy)]
struct Control(&'static str);

impl QueryFragment<Pg> for Control {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(self.0);
        Ok(())
    }
}

impl QueryId for Control {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

/// `BEGIN`: join it first in the body's first pipeline.
pub(crate) async fn begin(mut conn: &AsyncPgConnection) -> QueryResult<()> {
    Control("BEGIN").execute(&mut conn).await.map(drop)
}

/// `COMMIT`: join it last in the body's last pipeline.
pub(crate) async fn commit(mut conn: &AsyncPgConnection) -> QueryResult<()> {
    Control("COMMIT").execute(&mut conn).await.map(drop)
}

/// Runs `body` as one transaction. The body must send [`begin`] before any
/// other statement and [`commit`] after the last one, and return `Ok` only
/// when `commit` answered `Ok`.
pub(crate) async fn run<T, E: From<Error>>(
    conn: &mut AsyncPgConnection,
    body: impl AsyncFnOnce(&AsyncPgConnection) -> Result<T, E>,
) -> Result<T, E> {
    if in_transaction(conn)? {
        // `BEGIN` would be ignored and `COMMIT` would end the caller's transaction.
        return Err(Error::AlreadyInTransaction.into());
    }
    change_depth(conn, TransactionDepthChange::IncreaseDepth)?;
    match body(conn).await {
        Ok(value) => {
            change_depth(conn, TransactionDepthChange::DecreaseDepth)?;
            Ok(value)
        }
        Err(err) => {
            // If the rollback fails the connection stays marked as in a
            // transaction, and the pool drops it.
            if conn.batch_execute("ROLLBACK").await.is_ok() {
                change_depth(conn, TransactionDepthChange::DecreaseDepth)?;
            }
            Err(err)
        }
    }
}

fn in_transaction(conn: &mut AsyncPgConnection) -> QueryResult<bool> {
    match AnsiTransactionManager::transaction_manager_status_mut(conn) {
        TransactionManagerStatus::Valid(status) => Ok(status.transaction_depth().is_some()),
        TransactionManagerStatus::InError => Err(Error::BrokenTransactionManager),
    }
}

fn change_depth(conn: &mut AsyncPgConnection, change: TransactionDepthChange) -> QueryResult<()> {
    match AnsiTransactionManager::transaction_manager_status_mut(conn) {
        TransactionManagerStatus::Valid(status) => status.change_transaction_depth(change),
        TransactionManagerStatus::InError => Err(Error::BrokenTransactionManager),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking
mod tests {
    use std::time::Duration;

    use diesel::QueryableByName;
    use diesel::sql_types::BigInt;
    use diesel_async::AsyncConnection;
    use diesel_async::pooled_connection::PoolableConnection;
    use futures_util::future::{try_join, try_join3};

    use super::*;

    /// A fresh connection to the shared server's `test` database; these
    /// tests only use temporary tables, which no other connection sees.
    async fn connect() -> AsyncPgConnection {
        let server = std::env::var("HERALD_TEST_PG")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
        AsyncPgConnection::establish(&format!("{server}/test"))
            .await
            .expect("PostgreSQL answers")
    }

    #[derive(QueryableByName)]
    struct Txid {
        #[diesel(sql_type = BigInt)]
        id: i64,
    }

    /// Never cached: it is prepared again (one more round trip) on every call.
    async fn txid(mut conn: &AsyncPgConnection) -> QueryResult<i64> {
        let row: Txid = diesel::sql_query("SELECT txid_current() AS id")
            .get_result(&mut conn)
            .await?;
        Ok(row.id)
    }

    fn depth(conn: &mut AsyncPgConnection) -> Option<u32> {
        match AnsiTransactionManager::transaction_manager_status_mut(conn) {
            TransactionManagerStatus::Valid(status) => status.transaction_depth().map(|d| d.get()),
            TransactionManagerStatus::InError => panic!("transaction manager in error"),
        }
    }

    #[tokio::test]
    async fn commit_waits_for_a_statement_still_being_prepared() {
        // On a fresh connection nothing is prepared yet: BEGIN, COMMIT and
        // both reads are prepared on the way, and must still run in order,
        // all in one transaction.
        let mut conn = connect().await;
        let (first, second) = run(&mut conn, async |conn| {
            let ((), first) = try_join(begin(conn), txid(conn)).await?;
            let (second, ()) = try_join(txid(conn), commit(conn)).await?;
            Ok::<_, Error>((first, second))
        })
        .await
        .unwrap();
        assert_eq!(first, second, "both reads ran in the one transaction");
        let after = txid(&conn).await.unwrap();
        assert_ne!(after, first, "the transaction was committed");
        assert_eq!(depth(&mut conn), None);
        assert!(!conn.is_broken());
    }

    async fn insert(mut conn: &AsyncPgConnection, id: i32) -> QueryResult<usize> {
        diesel::sql_query("INSERT INTO t VALUES ($1)")
            .bind::<diesel::sql_types::Integer, _>(id)
            .execute(&mut conn)
            .await
    }

    #[tokio::test]
    async fn a_failed_body_is_rolled_back_and_the_connection_stays_usable() {
        let mut conn = connect().await;
        conn.batch_execute("CREATE TEMP TABLE t (id int PRIMARY KEY)")
            .await
            .unwrap();
        let result = run(&mut conn, async |conn| {
            try_join(begin(conn), insert(conn, 1)).await?;
            try_join3(insert(conn, 2), insert(conn, 1), commit(conn)).await?;
            Ok::<_, Error>(())
        })
        .await;
        assert!(
            matches!(result, Err(Error::DatabaseError(_, _))),
            "the duplicate key fails the body: {result:?}"
        );
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let count: Count = diesel::sql_query("SELECT count(*) AS n FROM t")
            .get_result(&mut conn)
            .await
            .unwrap();
        assert_eq!(count.n, 0, "nothing of the failed body was kept");
        assert_eq!(depth(&mut conn), None);
        assert!(!conn.is_broken());
    }

    #[tokio::test]
    async fn a_body_dropped_halfway_leaves_the_connection_broken_for_the_pool() {
        let mut conn = connect().await;
        let body = run(&mut conn, async |conn| {
            let mut sleeper = conn;
            let sleep = diesel::sql_query("SELECT pg_sleep(5)").execute(&mut sleeper);
            try_join(begin(conn), sleep).await?;
            commit(conn).await
        });
        let cancelled = tokio::time::timeout(Duration::from_millis(200), body).await;
        assert!(cancelled.is_err(), "the body was still sleeping");
        assert!(
            conn.is_broken(),
            "a connection left inside a transaction must not go back to the pool"
        );
    }

    #[tokio::test]
    async fn refuses_to_run_inside_another_transaction() {
        let mut conn = connect().await;
        let nested = conn
            .transaction::<_, Error, _>(async |conn| {
                run(conn, async |conn| commit(conn).await).await
            })
            .await;
        assert!(
            matches!(nested, Err(Error::AlreadyInTransaction)),
            "{nested:?}"
        );
    }
}
