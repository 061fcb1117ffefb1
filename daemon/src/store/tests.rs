//! The store on a real SQLite file: group commit, rollback of one write
//! alone, the commit bus, and each concern's typed operations.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::bus::Changes;
use super::*;
use crate::model::{MessageKind, Seq, SlotKind};
use crate::testing::{TempStore, bot, principal};
use crate::transcript::CanonicalJson;
use serde_json::json;
use std::sync::Mutex as StdMutex;

/// A channel `id` administered by `admin`, with player slots `a`, `b` (open
/// with invites `inv-a`, `inv-b`) and bot slot `bot:r`.
fn new_channel(tx: &mut dyn Tx, id: &str, admin: &str) -> Result<(), StoreError> {
    tx.insert_channel(&NewChannel {
        id,
        name: "test",
        admin,
        allow_network: false,
    })?;
    for (i, (label, kind)) in [
        ("a", SlotKind::Invite),
        ("b", SlotKind::Invite),
        ("bot:r", SlotKind::Bot),
    ]
    .into_iter()
    .enumerate()
    {
        // ch1's invites are `inv-a` and `inv-b`; other channels' are unique too.
        let invite = if id == "ch1" {
            format!("inv-{label}")
        } else {
            format!("inv-{id}-{label}")
        };
        tx.insert_slot(
            id,
            &NewSlot {
                label,
                kind,
                position: i,
                holder: None,
                invite_hash: (kind == SlotKind::Invite).then_some(invite.as_bytes()),
            },
        )?;
    }
    Ok(())
}

fn text(s: &str) -> CanonicalJson {
    CanonicalJson::of(&json!(s))
}

fn say<'a>(sender: &'a str, body: &'a CanonicalJson) -> NewMessage<'a> {
    NewMessage::new(sender, MessageKind::User, body)
}

async fn setup() -> (TempStore, String) {
    let t = TempStore::new();
    let p = principal(&t.store, "admin").await;
    let pid = p.id.clone();
    t.store
        .write(move |tx: &mut dyn Tx| new_channel(tx, "ch1", &pid))
        .await
        .unwrap();
    (t, p.id)
}

#[tokio::test]
async fn a_failed_write_rolls_back_alone() {
    let (t, admin) = setup().await;
    let a2 = admin.clone();
    let ok = t
        .store
        .write(move |tx: &mut dyn Tx| new_channel(tx, "ch2", &admin));
    let bad = t.store.write(move |tx: &mut dyn Tx| {
        new_channel(tx, "ch3", &a2)?;
        // Fails: ch1's slot `a` already holds this invite hash (unique).
        tx.set_invite("ch3", "a", b"inv-a")
    });
    let (a, b) = tokio::join!(ok, bad);
    assert!(a.is_ok());
    assert!(matches!(b, Err(StoreError::Sqlite(_))), "{b:?}");
    let (c2, c3) = t
        .store
        .read(|tx: &dyn ReadTx| Ok::<_, StoreError>((tx.channel("ch2")?, tx.channel("ch3")?)))
        .await
        .unwrap();
    assert!(c2.is_some(), "the good write of the batch committed");
    assert!(c3.is_none(), "nothing of the failed write survives");
}

#[tokio::test]
async fn pragmas_make_commits_durable() {
    let t = TempStore::new();
    let (mode, sync): (String, String) = t
        .store
        .sql_write(|c| match c.as_sqlite() {
            Some(c) => {
                let m: String = c.pragma_query_value(None, "journal_mode", |r| r.get(0))?;
                let s: i64 = c.pragma_query_value(None, "synchronous", |r| r.get(0))?;
                Ok::<_, StoreError>((m, s.to_string()))
            }
            // PostgreSQL: the writer's session commits synchronously,
            // whatever the server's default.
            None => {
                let s: String =
                    c.query_row("SHOW synchronous_commit", rusqlite::params![], |r| r.get(0))?;
                Ok(("postgres".into(), s))
            }
        })
        .await
        .unwrap();
    if mode == "postgres" {
        assert_eq!(sync, "on", "synchronous_commit must be on");
    } else {
        assert_eq!(mode, "wal");
        assert_eq!(sync, "2", "synchronous must be FULL (2)");
    }
}

#[tokio::test]
async fn writes_queued_together_commit_in_one_transaction() {
    let (t, _) = setup().await;
    // "run N" when write N's closure runs, "commit N" when its commit is
    // published (after the COMMIT that contains it).
    let log: Arc<StdMutex<Vec<String>>> = Arc::default();
    let l = log.clone();
    t.store.bus().subscribe(move |c| {
        l.lock().unwrap().push(format!("commit {}", c.head));
    });
    // Hold the writer thread inside a write until the others are queued.
    let (release, held) = std::sync::mpsc::channel::<()>();
    let (entered, inside) = oneshot::channel::<()>();
    let store = t.store.clone();
    let gate = tokio::spawn(async move {
        store
            .sql_write(move |_| {
                let _ = entered.send(());
                held.recv().ok();
                Ok::<_, StoreError>(())
            })
            .await
    });
    inside.await.unwrap();
    type Pending<'a> =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<i64, StoreError>> + Send + 'a>>;
    let mut writes: Vec<Pending<'_>> = (0..10)
        .map(|i| {
            let l = log.clone();
            Box::pin(t.store.write(move |tx: &mut dyn Tx| {
                let body = text(&format!("m{i}"));
                let a = tx.append("ch1", say("a", &body))?;
                l.lock().unwrap().push(format!("run {}", a.seq));
                Ok::<_, StoreError>(a.seq)
            })) as Pending<'_>
        })
        .collect();
    // A write is queued on its first poll.
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    for w in &mut writes {
        assert!(w.as_mut().poll(&mut cx).is_pending());
    }
    release.send(()).unwrap();
    gate.await.unwrap().unwrap();
    let mut seqs = Vec::new();
    for w in writes {
        seqs.push(w.await.unwrap());
    }
    assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
    let log = log.lock().unwrap().clone();
    let runs: Vec<String> = (1..=10).map(|i| format!("run {i}")).collect();
    let commits: Vec<String> = (1..=10).map(|i| format!("commit {i}")).collect();
    assert_eq!(
        log,
        [runs, commits].concat(),
        "all ten ran in one transaction, then it committed"
    );
}

#[tokio::test]
async fn commits_are_published_only_for_writes_that_kept_their_changes() {
    let (t, _) = setup().await;
    let seen: Arc<StdMutex<Vec<Commit>>> = Arc::default();
    let s = seen.clone();
    t.store
        .bus()
        .subscribe(move |c| s.lock().unwrap().push(c.clone()));
    let body = text("kept");
    let kept = t
        .store
        .write(move |tx: &mut dyn Tx| tx.append("ch1", say("a", &body)))
        .await
        .unwrap();
    let refused = t
        .store
        .write(move |tx: &mut dyn Tx| {
            let body = text("refused");
            tx.append("ch1", say("a", &body))?;
            Err::<(), _>(StoreError::WriterGone)
        })
        .await;
    assert!(refused.is_err());
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![Commit {
            channel_id: "ch1".into(),
            head: kept.seq,
            changes: Changes {
                messages: true,
                ..Changes::default()
            },
        }]
    );
}

#[tokio::test]
async fn long_poll_wake_ups_hear_of_a_commit_only_after_its_writer_was_answered() {
    let (t, _) = setup().await;
    let (answered_tx, answered_rx) = std::sync::mpsc::channel::<()>();
    let answered_rx = StdMutex::new(answered_rx);
    let (heard_tx, heard) = tokio::sync::oneshot::channel::<bool>();
    let heard_tx = StdMutex::new(Some(heard_tx));
    // On the writer's thread: waits until the test has seen its write
    // answered. Were this phase run before the answers, the write could not
    // return while it waits, and it would time out.
    t.store.bus().subscribe_at(Phase::AfterAnswers, move |_| {
        let after = answered_rx
            .lock()
            .unwrap()
            .recv_timeout(std::time::Duration::from_secs(10))
            .is_ok();
        if let Some(tx) = heard_tx.lock().unwrap().take() {
            let _ = tx.send(after);
        }
    });
    let before: Arc<StdMutex<Vec<crate::model::Seq>>> = Arc::default();
    let b = before.clone();
    t.store
        .bus()
        .subscribe(move |c| b.lock().unwrap().push(c.head));
    let body = text("wake them");
    let posted = t
        .store
        .write(move |tx: &mut dyn Tx| tx.append("ch1", say("a", &body)))
        .await
        .unwrap();
    assert_eq!(
        *before.lock().unwrap(),
        [posted.seq],
        "the other subscribers heard before the write returned"
    );
    answered_tx.send(()).unwrap();
    assert!(
        heard.await.unwrap(),
        "the wake-ups heard of the commit after the write was answered"
    );
}

#[tokio::test]
async fn a_commit_is_published_once_durable_and_visible_to_other_connections() {
    let (t, _) = setup().await;
    if t.store.is_shared() {
        // Reads the SQLite file from outside; on PostgreSQL the same promise
        // is `tests/it/scale.rs`' remote long-poll, which re-reads through
        // another daemon's connections.
        return;
    }
    let path = t.store.path().to_path_buf();
    let visible: Arc<StdMutex<Vec<bool>>> = Arc::default();
    let v = visible.clone();
    t.store.bus().subscribe(move |c| {
        // A separate connection, as another process would read the file.
        let other = rusqlite::Connection::open(&path).unwrap();
        let n: i64 = other
            .query_row(
                "SELECT COUNT(*) FROM messages WHERE channel_id = ?1 AND seq = ?2",
                rusqlite::params![c.channel_id, c.head],
                |r| r.get(0),
            )
            .unwrap();
        v.lock().unwrap().push(n == 1);
    });
    for i in 0..3 {
        let body = text(&format!("{i}"));
        t.store
            .write(move |tx: &mut dyn Tx| tx.append("ch1", say("a", &body)))
            .await
            .unwrap();
    }
    assert_eq!(*visible.lock().unwrap(), vec![true, true, true]);
}

#[tokio::test]
async fn each_change_is_named_on_the_bus() {
    let (t, admin) = setup().await;
    let seen: Arc<StdMutex<Vec<Changes>>> = Arc::default();
    let s = seen.clone();
    t.store
        .bus()
        .subscribe(move |c| s.lock().unwrap().push(c.changes));
    t.store
        .write(move |tx: &mut dyn Tx| tx.fill_seat("ch1", "a", &admin, b"rj"))
        .await
        .unwrap();
    t.store
        .write(|tx: &mut dyn Tx| tx.insert_bot("ch1", "bot:r", &bot("R", &["on_init"])))
        .await
        .unwrap();
    t.store
        .write(|tx: &mut dyn Tx| tx.close_channel("ch1"))
        .await
        .unwrap();
    t.store
        .write(|tx: &mut dyn Tx| tx.rename_channel("ch1", "x"))
        .await
        .unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            Changes {
                seats: true,
                ..Changes::default()
            },
            Changes {
                bots: true,
                ..Changes::default()
            },
            Changes {
                closed: true,
                ..Changes::default()
            },
            Changes {
                renamed: true,
                ..Changes::default()
            },
        ]
    );
}

#[tokio::test]
async fn a_closed_store_refuses_writes() {
    let (t, _) = setup().await;
    t.store.close();
    let r = t
        .store
        .write(|tx: &mut dyn Tx| tx.rename_channel("ch1", "late"))
        .await;
    assert!(matches!(r, Err(StoreError::WriterGone)), "{r:?}");
}

#[tokio::test]
async fn the_transcript_reads_back_in_order_from_a_cursor_with_a_limit() {
    let (t, _) = setup().await;
    t.store
        .write(|tx: &mut dyn Tx| {
            for i in 1..=5 {
                let body = CanonicalJson::of(&json!({"n": i}));
                tx.append("ch1", say("a", &body))?;
            }
            let secret = text("psst");
            let to = vec!["b".to_string()];
            tx.append(
                "ch1",
                NewMessage {
                    to: Some(&to),
                    ..NewMessage::new("a", MessageKind::User, &secret)
                },
            )?;
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
    let (page, rest, ch) = t
        .store
        .read(|tx: &dyn ReadTx| {
            Ok::<_, StoreError>((
                tx.messages_after("ch1", 1, 2)?,
                tx.messages_after("ch1", 3, 100)?,
                tx.channel("ch1")?.unwrap(),
            ))
        })
        .await
        .unwrap();
    assert_eq!(page.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![2, 3]);
    assert_eq!(page[0].body.as_str(), r#"{"n":2}"#);
    assert_eq!(
        rest.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![4, 5, 6]
    );
    let private = &rest[2];
    assert_eq!(private.to.as_deref(), Some(&["b".to_string()][..]));
    assert!(private.body_salt.as_ref().is_some_and(|s| s.len() == 32));
    assert_eq!(ch.last_seq, 6);
    assert_eq!(ch.head_hash, private.hash);
}

#[tokio::test]
async fn a_seat_is_found_by_its_secret_only_while_the_secret_is_live() {
    let (t, admin) = setup().await;
    let found = t
        .store
        .read(|tx: &dyn ReadTx| tx.seat_by_secret(SeatSecret::Invite, b"inv-a"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (found.channel_id.as_str(), found.label.as_str()),
        ("ch1", "a")
    );
    assert_eq!(found.holder, None);
    let (a2, a3) = (admin.clone(), admin.clone());
    t.store
        .write(move |tx: &mut dyn Tx| tx.fill_seat("ch1", "a", &a2, b"rj-a"))
        .await
        .unwrap();
    let (invite, rejoin, seats) = t
        .store
        .read(move |tx: &dyn ReadTx| {
            Ok::<_, StoreError>((
                tx.seat_by_secret(SeatSecret::Invite, b"inv-a")?,
                tx.seat_by_secret(SeatSecret::Rejoin, b"rj-a")?,
                tx.seats_of("ch1", &admin)?,
            ))
        })
        .await
        .unwrap();
    assert!(invite.is_none(), "filling a seat spends its invite");
    assert_eq!(rejoin.unwrap().holder, Some(a3));
    assert_eq!(seats, vec!["a".to_string()]);
}

#[tokio::test]
async fn a_bot_keeps_its_cursor_and_state() {
    let (t, _) = setup().await;
    t.store
        .write(|tx: &mut dyn Tx| {
            tx.insert_bot("ch1", "bot:r", &bot("R", &["on_message"]))?;
            tx.set_bot_cursor("ch1", "bot:r", 7)?;
            tx.set_bot_state("ch1", "bot:r", &CanonicalJson::of(&json!({"k": [1]})))
        })
        .await
        .unwrap();
    let (bots, rt, with) = t
        .store
        .read(|tx: &dyn ReadTx| {
            Ok::<_, StoreError>((
                tx.bots("ch1")?,
                tx.bot_runtime("ch1", "bot:r")?,
                tx.channels_with_bots()?,
            ))
        })
        .await
        .unwrap();
    assert_eq!(bots.len(), 1);
    assert_eq!(bots[0].cursor, 7);
    assert!(bots[0].manifest.defines("on_message"));
    assert_eq!(rt.unwrap().state, json!({"k": [1]}));
    assert_eq!(with, vec!["ch1".to_string()]);
}

#[tokio::test]
async fn a_corrupt_manifest_is_reported_not_guessed() {
    let (t, _) = setup().await;
    t.store
        .write(|tx: &mut dyn Tx| tx.insert_bot("ch1", "bot:r", &bot("R", &[])))
        .await
        .unwrap();
    t.store
        .sql_write(|c| {
            c.execute(
                "UPDATE bots SET manifest = '{\"name\": 3}'",
                rusqlite::params![],
            )?;
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
    let r = t.store.read(|tx: &dyn ReadTx| tx.bots("ch1")).await;
    assert!(
        matches!(
            r,
            Err(StoreError::Corrupt {
                what: "bot manifest",
                ..
            })
        ),
        "{r:?}"
    );
}

#[tokio::test]
async fn channels_of_lists_held_and_administered_channels_newest_first() {
    let (t, admin) = setup().await;
    let guest = principal(&t.store, "guest").await;
    let (g, a) = (guest.id.clone(), admin.clone());
    t.store
        .write(move |tx: &mut dyn Tx| {
            new_channel(tx, "ch2", &a)?;
            tx.fill_seat("ch2", "b", &g, b"rj-g")
        })
        .await
        .unwrap();
    let (mine, theirs) = t
        .store
        .read(move |tx: &dyn ReadTx| {
            Ok::<_, StoreError>((
                tx.channels_of(&admin, None, 100)?,
                tx.channels_of(&guest.id, None, 100)?,
            ))
        })
        .await
        .unwrap();
    let ids = |v: &[ChannelRecord]| v.iter().map(|c| c.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&mine).len(), 2);
    assert!(mine[0].created_at >= mine[1].created_at);
    assert_eq!(ids(&theirs), vec!["ch2".to_string()]);
}

#[tokio::test]
async fn a_write_that_cannot_begin_reports_the_sqlite_error_and_the_writer_lives_on() {
    let (t, _) = setup().await;
    if t.store.is_shared() {
        // SQLite's file lock; PostgreSQL writers wait on each other instead.
        return;
    }
    // Another process holds the database's write lock past the busy timeout.
    let other = rusqlite::Connection::open(t.store.path()).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let r = t
        .store
        .write(|tx: &mut dyn Tx| tx.rename_channel("ch1", "blocked"))
        .await;
    other.execute_batch("ROLLBACK").unwrap();
    match r {
        Err(StoreError::Sqlite(e)) => {
            assert_eq!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy),
                "{e}"
            );
        }
        other => panic!("expected the SQLite error, got {other:?}"),
    }
    t.store
        .write(|tx: &mut dyn Tx| tx.rename_channel("ch1", "later"))
        .await
        .unwrap();
}

/// Every message counted whole: a reader who may read them all.
const WHOLE: &dyn Fn(&StoredMessage) -> Shown = &|_| Shown::Whole;

#[tokio::test]
async fn a_page_of_messages_stops_at_its_byte_budget_but_never_comes_back_empty() {
    let (t, _) = setup().await;
    t.store
        .write(|tx: &mut dyn Tx| {
            for i in 0..6 {
                let body = CanonicalJson::of(&json!({"n": i, "pad": "x".repeat(1000)}));
                tx.append("ch1", say("a", &body))?;
            }
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
    let (all, three, one, none) = t
        .store
        .read(|tx: &dyn ReadTx| {
            let all = tx.messages_page("ch1", 0, 100, usize::MAX, WHOLE)?;
            let each = all[0].page_bytes(Shown::Whole);
            Ok::<_, StoreError>((
                all.clone(),
                tx.messages_page("ch1", 0, 100, 3 * each + each / 2, WHOLE)?,
                tx.messages_page("ch1", 2, 100, 1, WHOLE)?,
                tx.messages_page("ch1", 6, 100, usize::MAX, WHOLE)?,
            ))
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 6);
    assert!(
        all.iter().all(|m| m.page_bytes(Shown::Whole) > 1000),
        "the body counts for a reader who receives it"
    );
    assert_eq!(
        three.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(
        one.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![3],
        "a message larger than the budget still comes, alone"
    );
    assert!(none.is_empty());
}

#[tokio::test]
async fn channel_pages_are_keyset_pages_newest_first_without_gaps_or_repeats() {
    let (t, admin) = setup().await;
    let a = admin.clone();
    t.store
        .write(move |tx: &mut dyn Tx| {
            for i in 0..6 {
                new_channel(tx, &format!("p{i}"), &a)?;
            }
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
    let all = {
        let a = admin.clone();
        t.store
            .read(move |tx: &dyn ReadTx| tx.channels_of(&a, None, 100))
            .await
            .unwrap()
    };
    assert_eq!(all.len(), 7, "ch1 and p0..p5");
    let mut seen = Vec::new();
    let mut after: Option<ChannelKey> = None;
    loop {
        let (a, k) = (admin.clone(), after.clone());
        let page = t
            .store
            .read(move |tx: &dyn ReadTx| tx.channels_of(&a, k.as_ref(), 3))
            .await
            .unwrap();
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        after = Some(ChannelKey {
            created_at: last.created_at,
            id: last.id.clone(),
        });
        seen.extend(page.into_iter().map(|c| c.id));
    }
    let ids: Vec<String> = all.into_iter().map(|c| c.id).collect();
    assert_eq!(seen, ids, "paging walks the whole list in its order, once");
}

/// Without one read transaction, each statement of a read saw the database
/// as of its own start: a seat check and the messages read after it could
/// straddle a commit (a kick, then a message meant for members only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_sees_one_snapshot_even_across_a_commit() {
    let (t, _) = setup().await;
    let (go, ready) = tokio::sync::oneshot::channel::<()>();
    let (done, wait_done) = std::sync::mpsc::channel::<()>();
    let store = t.store.clone();
    let reader = tokio::spawn(async move {
        store
            .read(move |tx: &dyn ReadTx| {
                let before = tx.messages_after("ch1", 0, 100)?.len();
                go.send(()).unwrap();
                // The write below commits while this read is open.
                wait_done.recv().unwrap();
                let after = tx.messages_after("ch1", 0, 100)?.len();
                Ok::<_, StoreError>((before, after))
            })
            .await
    });
    ready.await.unwrap();
    t.store
        .write(|tx: &mut dyn Tx| tx.append("ch1", say("a", &text("between"))).map(|_| ()))
        .await
        .unwrap();
    done.send(()).unwrap();
    let (before, after) = reader.await.unwrap().unwrap();
    assert_eq!((before, after), (0, 0), "one snapshot for the whole read");
    let now = t
        .store
        .read(|tx: &dyn ReadTx| tx.messages_after("ch1", 0, 100))
        .await
        .unwrap();
    assert_eq!(now.len(), 1, "the next read sees the commit");
}

/// A database from before causes and state hashes migrates: its bots get a
/// state salt of their own, its messages keep hashing as they were sealed.
#[tokio::test]
async fn a_database_from_before_causes_migrates_and_its_chain_still_verifies() {
    let dir = std::env::temp_dir().join(format!("mcpmp-migrate-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("state.db");
    let body = text("hello");
    let hash = {
        let c = rusqlite::Connection::open(&path).unwrap();
        // Every migration before the one that added causes.
        let before: Vec<&str> = MIGRATIONS
            .iter()
            .copied()
            .take_while(|m| !m.contains("ADD COLUMN cause"))
            .collect();
        assert!(before.len() < MIGRATIONS.len());
        for sql in &before {
            c.execute_batch(sql).unwrap();
        }
        c.pragma_update(None, "user_version", before.len() as i64)
            .unwrap();
        let sealed = crate::transcript::Entry {
            seq: 1,
            channel_id: "ch1",
            sender: "a",
            kind: "user",
            ts: "2026-01-01T00:00:00.000Z",
            body: &body,
            private: None,
            cause: None,
            state_hash: None,
        }
        .seal(crate::transcript::GENESIS);
        c.execute_batch(&format!(
            "INSERT INTO principals VALUES ('p', 'p', 'cli', 0);
             INSERT INTO channels (id, name, admin_principal, created_at, last_seq, head_hash)
               VALUES ('ch1', 'old', 'p', 0, 1, '{h}');
             INSERT INTO messages (channel_id, seq, sender, kind, body, body_hash, ts, hash)
               VALUES ('ch1', 1, 'a', 'user', '\"hello\"', '{bh}', '2026-01-01T00:00:00.000Z', '{h}');
             INSERT INTO bots (channel_id, bot_id, name, source, code_hash, manifest, manifest_hash, params, network, created_at)
               VALUES ('ch1', 'bot:r', 'R', 'x', 'c', '{{\"name\":\"R\",\"version\":\"1\",\"summary\":\"\",\"hooks\":[],\"params\":{{}},\"network\":false}}', 'm', '{{}}', 0, 0);",
            h = sealed.hash,
            bh = sealed.body_hash
        ))
        .unwrap();
        sealed.hash
    };
    let store = Store::open(&path).unwrap();
    let (msgs, rt) = store
        .read(|tx: &dyn ReadTx| {
            Ok::<_, StoreError>((
                tx.messages_after("ch1", 0, 10)?,
                tx.bot_runtime("ch1", "bot:r")?,
            ))
        })
        .await
        .unwrap();
    let salt = rt.unwrap().state_salt;
    assert_eq!(salt.len(), 32, "{salt:?}");
    assert!(salt.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!((msgs[0].cause, msgs[0].state_hash.as_deref()), (None, None));
    let view = serde_json::to_value(crate::channels::rules::message_view(
        &msgs[0],
        &crate::channels::rules::SeatReader::unsealed("a"),
    ))
    .unwrap();
    assert_eq!(crate::transcript::verify_chain("ch1", &[view]), Ok(hash));
    store.close();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two stores on one PostgreSQL database stand for two daemons: their
/// writers take turns (concurrent appends from both make one gap-free chain
/// that verifies), and each hears the other's commits on its own bus (what
/// wakes its long-polls and its dispatcher). SQLite has one daemon per file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_on_one_database_append_one_gap_free_chain_and_hear_each_other() {
    let (t, _) = setup().await;
    if !t.store.is_shared() {
        return;
    }
    let other = t.reopen();
    let (seen, mut heard) = tokio::sync::watch::channel(std::collections::BTreeSet::new());
    other.bus().subscribe(move |c| {
        if c.channel_id == "ch1" {
            seen.send_modify(|h| {
                h.insert(c.head);
            });
        }
    });
    const N: i64 = 40;
    let mut tasks = Vec::new();
    for i in 0..N {
        // Half through each store; the other store's bus hears the first
        // store's half only through PostgreSQL.
        let s = if i < N / 2 {
            other.clone()
        } else {
            t.store.clone()
        };
        tasks.push(tokio::spawn(async move {
            let body = text(&format!("m{i}"));
            s.write(move |tx: &mut dyn Tx| tx.append("ch1", say("a", &body)))
                .await
                .unwrap()
                .seq
        }));
    }
    let mut seqs = Vec::new();
    let mut remote = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        let seq = task.await.unwrap();
        if i as i64 >= N / 2 {
            remote.push(seq);
        }
        seqs.push(seq);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=N).collect::<Vec<_>>(), "one gap-free sequence");
    let (msgs, ch) = t
        .store
        .read(|tx: &dyn ReadTx| {
            Ok::<_, StoreError>((tx.messages_after("ch1", 0, 1000)?, tx.channel("ch1")?))
        })
        .await
        .unwrap();
    let views: Vec<serde_json::Value> = msgs
        .iter()
        .map(|m| {
            let a = crate::channels::rules::SeatReader::unsealed("a");
            serde_json::to_value(crate::channels::rules::message_view(m, &a)).unwrap()
        })
        .collect();
    let head = crate::transcript::verify_chain("ch1", &views).unwrap();
    assert_eq!(ch.unwrap().head_hash, head);
    // Every commit the first store made reached the other store's bus.
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        heard.wait_for(|h| remote.iter().all(|q| h.contains(q))),
    )
    .await
    .expect("the other daemon heard every commit")
    .unwrap();
    other.close();
}

#[tokio::test]
async fn a_remembered_token_stops_at_once_when_revoked_here_or_from_another_process() {
    let t = TempStore::new();
    let res = "http://test/mcp";
    let alice = principals::create_cli_token(&t.store, "alice")
        .await
        .unwrap();
    let bob = principals::create_cli_token(&t.store, "bob").await.unwrap();
    for token in [&alice, &bob] {
        assert!(
            principals::authenticate(&t.store, token, res)
                .await
                .unwrap()
                .is_ok()
        );
        let hash = crate::secrets::hash_secret(token);
        assert!(
            t.store
                .tokens()
                .get(&hash, res, crate::secrets::now_ms())
                .is_some(),
            "a valid token is remembered"
        );
    }
    // Revoked through this process's store: refused on the next request.
    assert_eq!(
        principals::revoke_cli_tokens(&t.store, "alice")
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        principals::authenticate(&t.store, &alice, res)
            .await
            .unwrap(),
        Err(principals::TokenRejection::Invalid)
    );

    // Revoked by another process (a CLI command: its own store, its own
    // memory, the same file): refused as soon as that command committed.
    assert!(
        principals::authenticate(&t.store, &bob, res)
            .await
            .unwrap()
            .is_ok()
    );
    // (On PostgreSQL the command may run on another machine: the daemon
    // forgets when it hears of the commit, its notification.)
    let mut heard = t.store.tokens().heard();
    let cli = t.reopen();
    assert_eq!(principals::revoke_cli_tokens(&cli, "bob").await.unwrap(), 1);
    cli.close();
    if t.store.is_shared() {
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            heard.wait_for(|n| *n > 0),
        )
        .await
        .expect("the revocation was heard")
        .unwrap();
        // The signal is the notification: no file in the state directory.
        assert!(!t.dir.join("postgres-revocations").exists());
    }
    assert_eq!(
        principals::authenticate(&t.store, &bob, res).await.unwrap(),
        Err(principals::TokenRejection::Invalid)
    );
}

#[tokio::test]
async fn a_lookup_that_raced_a_revocation_is_not_remembered() {
    let t = TempStore::new();
    let res = "http://test/mcp";
    let token = principals::create_cli_token(&t.store, "carol")
        .await
        .unwrap();
    let p = principals::authenticate(&t.store, &token, res)
        .await
        .unwrap()
        .unwrap();
    let hash = crate::secrets::hash_secret(&token);
    let cache = t.store.tokens();
    // A read that began before a revocation committed...
    let as_of = cache.epoch();
    principals::revoke_cli_tokens(&t.store, "carol")
        .await
        .unwrap();
    // ...found the token valid; what it found is not kept.
    cache.put(hash.clone(), &p, None, None, as_of);
    assert!(cache.get(&hash, res, crate::secrets::now_ms()).is_none());
}

/// A daemon whose notification connection broke may have missed another
/// daemon's revocation meanwhile: it forgets every remembered token, and
/// remembers again once it listens again. SQLite has no such connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_notification_connection_forgets_remembered_tokens() {
    let t = TempStore::new();
    let Some(pg) = t.store.inner.pg.clone() else {
        return;
    };
    let res = "http://test/mcp";
    let token = principals::create_cli_token(&t.store, "dave")
        .await
        .unwrap();
    let hash = crate::secrets::hash_secret(&token);
    let remembered = |store: &Store| {
        store
            .tokens()
            .get(&hash, res, crate::secrets::now_ms())
            .is_some()
    };
    assert!(
        principals::authenticate(&t.store, &token, res)
            .await
            .unwrap()
            .is_ok()
    );
    assert!(remembered(&t.store));
    let mut heard = t.store.tokens().heard();
    // The server ends the listener's session, as a restart or a network
    // failure would.
    let listen = format!("LISTEN \"{}\"", pg.notify_channel());
    let ended: i64 = t
        .store
        .sql_write(move |c| {
            c.query_row(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query = ?1",
                rusqlite::params![listen],
                |r| r.get(0),
            )
            .map_err(StoreError::from)
        })
        .await
        .unwrap();
    assert_eq!(ended, 1, "the listener's session");
    // Deaf once it noticed, listening again right after.
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        heard.wait_for(|n| *n >= 2),
    )
    .await
    .expect("the listener noticed and reconnected")
    .unwrap();
    assert!(!remembered(&t.store), "forgotten");
    assert!(
        principals::authenticate(&t.store, &token, res)
            .await
            .unwrap()
            .is_ok()
    );
    assert!(remembered(&t.store), "remembered again");
}

#[tokio::test]
async fn a_principals_first_bytes_of_a_day_drop_its_earlier_days_and_later_ones_leave_them() {
    let (t, p) = setup().await;
    let add = |day: i64, bytes: u64| {
        let p = p.clone();
        t.store
            .write(move |tx: &mut dyn Tx| tx.add_usage("ch1", Some((p.as_str(), day)), bytes))
    };
    let days = || {
        let p = p.clone();
        t.store.read(move |tx: &dyn ReadTx| {
            Ok::<_, StoreError>((
                [1, 2, 3].map(|d| tx.principal_bytes(&p, d).unwrap()),
                tx.channel_bytes("ch1")?,
            ))
        })
    };
    add(1, 10).await.unwrap();
    add(1, 5).await.unwrap();
    assert_eq!(days().await.unwrap(), ([15, 0, 0], 15));
    // Day 2's first bytes: day 1's row goes.
    add(2, 4).await.unwrap();
    assert_eq!(days().await.unwrap(), ([0, 4, 0], 19));
    // A row of an earlier day that appears after the day's first bytes
    // stays until the next day's first: later bytes of day 2 delete nothing.
    add(1, 7).await.unwrap();
    add(2, 3).await.unwrap();
    assert_eq!(days().await.unwrap(), ([7, 7, 0], 29));
    add(3, 1).await.unwrap();
    assert_eq!(days().await.unwrap(), ([0, 0, 1], 30));
}

/// A kick's seal is stored with the slot: `free_seat` records it, a refill
/// by invite and a move by rejoin token keep it, and a slot never kicked
/// reads 0 (the migration's default).
#[tokio::test]
async fn a_kicked_seats_seal_is_kept_through_refills_and_moves() {
    let (t, admin) = setup().await;
    let seals = t
        .store
        .write(move |tx: &mut dyn Tx| {
            let seal = |tx: &mut dyn Tx| -> Result<Vec<(String, Seq)>, StoreError> {
                Ok(tx
                    .slots("ch1")?
                    .into_iter()
                    .map(|s| (s.label, s.private_from))
                    .collect())
            };
            let mut seen = vec![seal(tx)?];
            tx.fill_seat("ch1", "a", &admin, b"rj-1")?;
            tx.free_seat("ch1", "a", b"inv-a2", 7)?;
            seen.push(seal(tx)?);
            tx.fill_seat("ch1", "a", &admin, b"rj-2")?;
            tx.fill_seat("ch1", "a", &admin, b"rj-3")?;
            seen.push(seal(tx)?);
            Ok::<_, StoreError>(seen)
        })
        .await
        .unwrap();
    let a = |i: usize| seals[i].iter().find(|(l, _)| l == "a").unwrap().1;
    assert_eq!(a(0), 0, "never kicked");
    assert_eq!((a(1), a(2)), (7, 7));
    assert!(seals[2].iter().all(|(l, s)| l == "a" || *s == 0));
}

/// The mechanism behind `channels::tests::where_a_page_ends_says_nothing_of_a_private_body_its_reader_cannot_read`:
/// a message its reader receives redacted counts without its body and
/// salt, so its length cannot move where the page ends.
#[tokio::test]
async fn a_redacted_message_counts_against_a_page_without_its_body() {
    let (t, _) = setup().await;
    let to = vec!["b".to_string()];
    t.store
        .write(move |tx: &mut dyn Tx| {
            let secret = CanonicalJson::of(&json!({"secret": "s".repeat(5000)}));
            tx.append(
                "ch1",
                NewMessage {
                    to: Some(&to),
                    ..say("a", &secret)
                },
            )?;
            for i in 0..6 {
                let body = CanonicalJson::of(&json!({"n": i, "pad": "x".repeat(1000)}));
                tx.append("ch1", say("a", &body))?;
            }
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
    let (all, whole, redacted) = t
        .store
        .read(move |tx: &dyn ReadTx| {
            let all = tx.messages_page("ch1", 0, 100, usize::MAX, WHOLE)?;
            let budget = all[0].page_bytes(Shown::Redacted) + 3 * all[1].page_bytes(Shown::Whole);
            Ok::<_, StoreError>((
                all,
                tx.messages_page("ch1", 0, 100, budget, WHOLE)?,
                tx.messages_page("ch1", 0, 100, budget, &|m| {
                    if m.to.is_some() {
                        Shown::Redacted
                    } else {
                        Shown::Whole
                    }
                })?,
            ))
        })
        .await
        .unwrap();
    let mut shorter = all[0].clone();
    shorter.body = CanonicalJson::of(&json!({"secret": "s"}));
    assert_eq!(
        all[0].page_bytes(Shown::Redacted),
        shorter.page_bytes(Shown::Redacted),
        "the body's length is not counted"
    );
    assert!(all[0].page_bytes(Shown::Whole) > 5000);
    assert_eq!(whole.len(), 1, "counted whole, the secret fills the page");
    assert_eq!(
        redacted.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
}
