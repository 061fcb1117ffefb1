//! Exporting a channel: the transcript as one member's seat sees it, with
//! everything an offline verifier needs (bots' exact sources, signed heads,
//! the daemon's public keys) in one document (`docs/transcripts.md`).
//!
//! An export is read a page at a time, each page in one snapshot that checks
//! the caller's token and seat again, like `sync_messages`: the MCP tool
//! returns one page, the HTTP endpoint streams them all.

use super::{Channels, Code, ToolError, bot_code_of, readable, rules};
use crate::model::{
    EXPORT_FORMAT, EXPORT_VERSION, ExportPage, ExportedChannel, Principal, Seq, SignedHead,
    SlotDecl, TranscriptExport,
};
use crate::secrets::{now_ms, rfc3339_ms};
use crate::store::{ChannelRecord, ReadTx};
use serde_json::Map;

/// The least room a page keeps for entries, whatever the bots' sources take.
const MIN_ENTRY_BYTES: usize = 64 * 1024;
/// Most entries in one page (the byte budget usually stops it first).
const MAX_PAGE_ENTRIES: usize = 100_000;

/// Whose view an export is: `exported_as` names it in the document, `seat`
/// decides which private bodies it holds (as `rules::SeatReader` reads it
/// from the slots in the export's snapshot: a kicked seat's history before
/// the kick is sealed; a label that is no slot, such as the empty one,
/// holds none).
pub(crate) struct Reader {
    pub exported_as: String,
    pub seat: String,
}

impl Channels {
    /// One page of the channel's export as `who`'s seat (`slot` for a
    /// principal with several) sees it: the entries after `after`, within
    /// the page byte budget less the bots' sources, with the signed heads
    /// held for them and one at the page's last entry. `page` is set when
    /// the document is not the whole channel.
    ///
    /// # Errors
    /// `BAD_REQUEST` for an `after` outside the transcript; `TOKEN_INVALID`,
    /// `CHANNEL_NOT_FOUND` and the seat errors of `sync_messages`.
    pub async fn export_page(
        &self,
        who: &Principal,
        channel_id: &str,
        slot: Option<String>,
        after: Seq,
    ) -> Result<TranscriptExport, ToolError> {
        let who = who.clone();
        self.export_page_as(channel_id, after, move |tx: &dyn ReadTx, cid: &str| {
            rules::require_credential(tx.credential_valid(&who.credential)?)?;
            let (ch, seats) = readable(tx, &who, cid)?;
            let seat = rules::resolve_seat(&seats, slot.as_deref())?;
            Ok((
                ch,
                Reader {
                    exported_as: seat.clone(),
                    seat,
                },
            ))
        })
        .await
    }

    /// One page of the channel's export for the reader `reader` admits, in
    /// the same snapshot as the entries it reads (`None`: the channel is
    /// gone or not theirs, as the closure's error says). The MCP tool, the
    /// HTTP export and the channel page's download all go through here.
    ///
    /// # Errors
    /// The closure's refusal; `BAD_REQUEST` for an `after` outside the
    /// transcript.
    pub(crate) async fn export_page_as<F>(
        &self,
        channel_id: &str,
        after: Seq,
        reader: F,
    ) -> Result<TranscriptExport, ToolError>
    where
        F: FnOnce(&dyn ReadTx, &str) -> Result<(ChannelRecord, Reader), ToolError> + Send + 'static,
    {
        let cid = channel_id.to_string();
        let max_bytes = self.max_sync_bytes;
        let mut doc = self
            .store
            .read(move |tx: &dyn ReadTx| {
                let (ch, Reader { exported_as, seat }) = reader(tx, &cid)?;
                if after < 0 || after >= ch.last_seq {
                    return Err(ToolError::new(
                        Code::BadRequest,
                        format!(
                            "after {after} is outside the transcript: give 0 for the whole export, or the cursor of the previous page (the last message is {})",
                            ch.last_seq
                        ),
                    ));
                }
                let mut bots = Vec::new();
                for b in tx.bots(&cid)? {
                    if let Some(rt) = tx.bot_runtime(&cid, &b.bot_id)? {
                        bots.push(bot_code_of(&cid, &b, rt));
                    }
                }
                let sources: usize = bots.iter().map(|b| b.source.len()).sum();
                let budget = max_bytes.saturating_sub(sources).max(MIN_ENTRY_BYTES);
                let slots = tx.slots(&cid)?;
                let reader = rules::SeatReader::of(&slots, &seat);
                let msgs = tx.messages_page(&cid, after, MAX_PAGE_ENTRIES, budget, &|m| {
                    rules::shown_to(m, &reader)
                })?;
                let cursor = msgs.last().map_or(after, |m| m.seq);
                let more = cursor < ch.last_seq;
                let slots = slots
                    .into_iter()
                    .map(|s| SlotDecl {
                        label: s.label,
                        kind: s.kind,
                    })
                    .collect();
                Ok(TranscriptExport {
                    format: EXPORT_FORMAT.into(),
                    version: EXPORT_VERSION,
                    exported_at: rfc3339_ms(now_ms()),
                    exported_as,
                    channel: ExportedChannel {
                        channel_id: ch.id.clone(),
                        name: ch.name.clone(),
                        created_at: rfc3339_ms(ch.created_at),
                        closed: ch.closed,
                        allow_network: ch.allow_network,
                        slots,
                    },
                    entries: msgs
                        .iter()
                        .map(|m| rules::message_view(m, &reader))
                        .collect(),
                    bots,
                    signed_heads: Vec::new(),
                    keys: Vec::new(),
                    replay: Map::new(),
                    page: (after > 0 || more).then_some(ExportPage {
                        after,
                        cursor,
                        more,
                    }),
                })
            })
            .await?;
        doc.signed_heads = self.heads_for(&doc);
        doc.keys = self.signer.keys().keys.clone();
        Ok(doc)
    }

    /// The heads held for the document's entries, and one at its last.
    fn heads_for(&self, doc: &TranscriptExport) -> Vec<SignedHead> {
        let Some(last) = doc.entries.last() else {
            return Vec::new();
        };
        let first = doc.entries.first().map_or(0, |m| m.seq);
        let mut heads: Vec<SignedHead> = self
            .signer
            .heads_until(&doc.channel.channel_id, last.seq - 1)
            .into_iter()
            .filter(|h| h.seq >= first)
            .collect();
        heads.push(
            self.signer
                .head(&doc.channel.channel_id, last.seq, &last.hash),
        );
        heads
    }
}
