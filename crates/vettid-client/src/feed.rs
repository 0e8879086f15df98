//! The vault's feed and audit log from the app, with the chain check.

use crate::ClientError;
use crate::vault::{Seen, Unlocked};
use vettid_proto::feed::{ChainedEvent, ExportFormat, FeedOp, FeedReply, verify_chain};

fn unexpected() -> ClientError {
    ClientError::Protocol("unexpected answer to a feed operation".into())
}

impl<S: Seen> Unlocked<S> {
    async fn all_pages(
        &mut self,
        mut op: impl FnMut(u64) -> FeedOp,
        from: u64,
    ) -> Result<Vec<ChainedEvent>, ClientError> {
        let (mut all, mut after) = (Vec::new(), from);
        loop {
            let FeedReply::Events { events, more } = self.run(op(after)).await? else {
                return Err(unexpected());
            };
            if let Some(last) = events.last() {
                after = last.seq;
            }
            let empty = events.is_empty();
            all.extend(events);
            if !more || empty {
                return Ok(all);
            }
        }
    }

    /// The feed items after `after` (all pages).
    pub async fn feed_items(
        &mut self,
        after: u64,
        archived: bool,
    ) -> Result<Vec<ChainedEvent>, ClientError> {
        self.all_pages(|a| FeedOp::List { after: a, archived }, after)
            .await
    }

    /// Every event after `since` (all pages), checked as a chain continuing from
    /// (`since`, `prev_hash`): the events and the new head hash.
    pub async fn sync_events(
        &mut self,
        since: u64,
        prev_hash: [u8; 32],
    ) -> Result<(Vec<ChainedEvent>, [u8; 32]), ClientError> {
        let events = self.all_pages(|s| FeedOp::Sync { since: s }, since).await?;
        let head = verify_chain(since, prev_hash, &events)
            .map_err(|e| ClientError::Protocol(format!("event chain: {e}")))?;
        Ok((events, head))
    }

    /// The whole audit log exported as JSON (one array) or CSV (one header), all pages.
    pub async fn export_audit(&mut self, format: ExportFormat) -> Result<String, ClientError> {
        let (mut rows, mut csv, mut after) = (Vec::new(), String::new(), 0);
        loop {
            let FeedReply::Export {
                document,
                last,
                more,
            } = self.run(FeedOp::Export { format, after }).await?
            else {
                return Err(unexpected());
            };
            match format {
                ExportFormat::Json => {
                    let page: Vec<serde_json::Value> = serde_json::from_str(&document)
                        .map_err(|_| ClientError::Protocol("export page is not JSON".into()))?;
                    rows.extend(page);
                }
                ExportFormat::Csv if csv.is_empty() => csv = document,
                ExportFormat::Csv => {
                    csv.push_str(document.split_once('\n').map_or("", |(_, rest)| rest))
                }
            }
            if !more || last <= after {
                break;
            }
            after = last;
        }
        Ok(match format {
            ExportFormat::Json => serde_json::to_string_pretty(&rows)
                .map_err(|e| ClientError::Protocol(e.to_string()))?,
            ExportFormat::Csv => csv,
        })
    }
}
