#![allow(clippy::unwrap_used)]

use super::*;
use crate::model::MessageKind;
use crate::store::StoredMessage;
use crate::transcript::CanonicalJson;

fn stored(seq: i64, sender: &str, body: &str, to: Option<&[&str]>) -> StoredMessage {
    StoredMessage {
        channel_id: "ch_1".into(),
        seq,
        sender: sender.into(),
        kind: MessageKind::User,
        body: CanonicalJson::of(body),
        to: to.map(|t| t.iter().map(|s| s.to_string()).collect()),
        body_hash: "sha256:00".into(),
        body_salt: to.map(|_| "salt".into()),
        ts: "2026-12-03T19:00:00.000Z".into(),
        hash: "00".into(),
        cause: None,
        state_hash: None,
    }
}

fn slot(label: &str, private_from: i64) -> crate::store::SlotRecord {
    crate::store::SlotRecord {
        label: label.into(),
        kind: crate::model::SlotKind::Invite,
        holder: Some("p".into()),
        has_bot: false,
        private_from,
    }
}

/// A message as the page shows it to `viewer`, in a channel where alice,
/// bob and carol sit and no seat was kicked.
fn view_for(m: &StoredMessage, viewer: &Viewer) -> MessageView {
    let slots = [slot("alice", 0), slot("bob", 0), slot("carol", 0)];
    rules::message_view(m, &reader_for(viewer, &slots))
}

#[test]
fn a_spectator_reads_what_an_unaddressed_member_reads_and_never_a_private_body() {
    let private = stored(2, "alice", "bid 450", Some(&["bob"]));
    let public = stored(1, "alice", "hello", None);
    let as_carol = view_for(
        &private,
        &Viewer::Member {
            seat: "carol".into(),
        },
    );
    let as_spectator = view_for(&private, &Viewer::Spectator);
    assert_eq!(as_spectator, as_carol);
    assert_eq!(as_spectator.body, None);
    assert_eq!(as_spectator.body_salt, None);
    assert_eq!(as_spectator.redacted, Some(true));
    assert!(view_for(&public, &Viewer::Spectator).body.is_some());
    // A member session reads as its seat: bob reads the body and its salt.
    let as_bob = view_for(&private, &Viewer::Member { seat: "bob".into() });
    assert!(as_bob.body.is_some() && as_bob.body_salt.is_some());
}

/// The attack: the admin kicks bob, takes his seat with the fresh invite and
/// opens the page as that seat (a member link) to read bob's private bid.
/// Stopped by `reader_for`, which reads the seat as its slot records it
/// (`SeatReader::of`: sealed before the kick at seq 3), as every page read,
/// stream batch and page export does.
#[test]
fn a_member_page_of_a_kicked_seat_does_not_show_its_history_before_the_kick() {
    let bid = stored(2, "bob", "bid 450", Some(&["bot:referee"]));
    let after = stored(5, "bot:referee", "your receipt", Some(&["bob"]));
    let slots = [slot("alice", 0), slot("bob", 3)];
    let bob_now = reader_for(&Viewer::Member { seat: "bob".into() }, &slots);
    let sealed = rules::message_view(&bid, &bob_now);
    assert_eq!((sealed.body, sealed.body_salt), (None, None));
    assert_eq!(sealed.redacted, Some(true));
    assert!(rules::message_view(&after, &bob_now).body.is_some());
}

#[test]
fn the_cookie_is_found_among_others_and_an_empty_one_is_none() {
    let mut h = HeaderMap::new();
    h.append(
        header::COOKIE,
        HeaderValue::from_static("a=1; mcpmp_page=s3cret; b=2"),
    );
    assert_eq!(cookie(&h).as_deref(), Some("s3cret"));
    let mut h = HeaderMap::new();
    h.append(header::COOKIE, HeaderValue::from_static("x=1"));
    h.append(header::COOKIE, HeaderValue::from_static("mcpmp_page="));
    assert_eq!(cookie(&h), None);
    let mut h = HeaderMap::new();
    h.append(header::COOKIE, HeaderValue::from_static("xmcpmp_page=nope"));
    assert_eq!(cookie(&h), None, "a cookie whose name only ends the same");
}

#[test]
fn assets_are_named_by_their_content() {
    let a = asset_paths();
    assert_eq!(a.js, format!("/page/page.{}.js", short_hash(JS)));
    assert_eq!(a.css, format!("/page/page.{}.css", short_hash(CSS)));
    assert_ne!(short_hash(JS), short_hash(CSS));
}

#[test]
fn the_script_and_stylesheet_have_nothing_the_csp_would_refuse_or_that_leaves_the_origin() {
    for (name, text) in [("page.js", JS), ("page.css", CSS)] {
        for banned in [
            "http://",
            "https://",
            "eval(",
            "new Function",
            "innerHTML",
            "insertAdjacentHTML",
            "document.write",
            "@import",
            "url(",
        ] {
            assert!(!text.contains(banned), "{name} contains {banned:?}");
        }
    }
}

#[test]
fn words_show_a_bot_posts_text_and_tag_and_a_private_entry_as_hidden() {
    let mut m = view_for(&stored(3, "alice", "x", None), &Viewer::Spectator);
    m.kind = MessageKind::Bot;
    m.sender = "bot:referee".into();
    m.body = Some(serde_json::json!({"type": "hint", "data": {"text": "higher", "guess": 5}}));
    let w = html::words(&m);
    assert_eq!(w.tag.as_deref(), Some("hint"));
    assert_eq!(w.text.as_deref(), Some("higher"));
    assert_eq!(w.data.as_deref(), Some("{\"guess\":5}"));
    let hidden = view_for(&stored(4, "alice", "x", Some(&["bob"])), &Viewer::Spectator);
    let w = html::words(&hidden);
    assert!(w.text.unwrap().contains("sha256:00"));
}

#[test]
fn the_page_escapes_names_and_bodies() {
    let m = view_for(
        &stored(1, "alice", "<script>x</script>", None),
        &Viewer::Spectator,
    );
    let a = asset_paths();
    let head = crate::signing::Signer::ephemeral().head("ch_1", 1, &m.hash);
    let msgs = [m];
    let page = html::page(&html::PageModel {
        channel_id: "ch_1",
        name: "<img src=x>",
        closed: false,
        viewer: &Viewer::Spectator,
        slots: vec![("alice".into(), true)],
        messages: &msgs,
        truncated: false,
        head: Some(&head),
        bots: &[],
        assets: &a,
    })
    .into_string();
    // The signed head rides in an attribute, its quotes escaped.
    assert!(page.contains(&format!(
        "data-head=\"{{&quot;channel_id&quot;:&quot;ch_1&quot;,&quot;seq&quot;:1,&quot;head_hash&quot;:&quot;{}&quot;",
        head.head_hash
    )));
    assert!(!page.contains("<img src=x>") && !page.contains("<script>x"));
    assert!(page.contains("&lt;img src=x&gt;") && page.contains("&lt;script&gt;x&lt;/script&gt;"));
    assert_eq!(page.matches("<script").count(), 1);
}
