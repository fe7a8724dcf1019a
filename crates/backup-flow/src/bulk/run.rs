//! The bulk run: one client session per input line, over the shared [`LineRun`] scheduler.

use std::io::{BufRead, Write};

use portal_api::Portal;
use tracing::Instrument as _;

use super::{BulkEvent, BulkOptions, BulkReport, LineResult};
use crate::client_lines::{LineEvent, LineRun, NumberedLine, write_result_line};
use crate::error::cause_chain;
use crate::flow::Flow;

impl Flow {
    /// Backs up every client of `input` (JSON Lines, see the [module docs](super)), writing
    /// one result line per client to `output`.
    ///
    /// `input` is read on a thread of its own, a line at a time; at most
    /// [`concurrency`](BulkOptions::with_concurrency) clients are in flight. A failing client
    /// never stops the others. Each line's credential opens a client session over `portal`,
    /// which supplies the hosts, retries and rate limits (shared by every line).
    ///
    /// # Errors
    /// Only reading `input` or writing `output`; every per-client failure is a result line
    /// (count them in the returned [`BulkReport`]). On an input error the clients already
    /// started are finished and their results written first.
    pub async fn bulk_backup<R, W>(
        &self,
        portal: &Portal,
        input: R,
        mut output: W,
        mut options: BulkOptions,
    ) -> std::io::Result<BulkReport>
    where
        R: BufRead + Send + 'static,
        W: Write + Send,
    {
        let mut report = BulkReport::default();
        let read = LineRun::new(options.concurrency)
            .with_shard(options.shard)
            // Two lines with one generate response name one backup: never at once.
            .exclusive_by(|line| {
                let mut ids = line.generate_response.as_ref()?.ids();
                ids.sort_unstable();
                Some(ids.join("\0"))
            })
            .run(
                input,
                |line| {
                    let span = tracing::info_span!("bulk", line = line.line);
                    let (flow, portal) = (self.clone(), portal.clone());
                    async move { flow.backup_line(&portal, line).await }.instrument(span)
                },
                |event| {
                    match event {
                        LineEvent::Started { line } => {
                            if let Some(progress) = options.progress.as_mut() {
                                progress(BulkEvent::Started { line });
                            }
                        }
                        LineEvent::Finished(result) => {
                            report.count(&result);
                            write_result_line(&mut output, &result)?;
                            if let Some(progress) = options.progress.as_mut() {
                                progress(BulkEvent::Finished(&result));
                            }
                        }
                    }
                    Ok(())
                },
            )
            .await?;
        report.lines = read.lines;
        report.selected = read.selected;
        report.skipped_by_shard = read.skipped_by_shard;
        Ok(report)
    }

    async fn backup_line(&self, portal: &Portal, numbered: NumberedLine) -> LineResult {
        let NumberedLine { line, parsed } = numbered;
        let (client, generate) = match parsed.and_then(|parsed| {
            let client = parsed
                .credential
                .client(portal)
                .map_err(|e| cause_chain(&e))?;
            let generate = parsed
                .generate_response
                .ok_or_else(|| "the line has no generateResponse".to_owned())?;
            Ok((client, generate))
        }) {
            Ok(usable) => usable,
            Err(reason) => return LineResult::failed(line, reason),
        };
        let mut client_id = None;
        match self
            .session(client)
            .backup_tracked(&generate, &mut client_id)
            .await
        {
            Ok(outcome) => LineResult::confirmed(line, outcome),
            Err(e) => {
                tracing::warn!(line, error = %cause_chain(&e), "bulk line failed");
                LineResult {
                    client_id,
                    ..LineResult::from_error(line, &e)
                }
            }
        }
    }
}
