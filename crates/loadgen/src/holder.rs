//! `herald-bench --hold-child`: a helper process of the `connections`
//! scenario. Every socket is a file descriptor, and one process may open
//! only as many as its open-files limit (20,000 on some machines, which
//! cannot be raised without privileges): `connections` starts one holder
//! per gateway and drives them over their standard input and output, one
//! line per message.
//!
//! In (from `connections`): `connect <start> <end>` opens users
//! `start..end`; `count` asks how many sockets are still open; end of input
//! closes everything and exits.
//! Out: `connected <total>`; `open <n>`; `f <k> <t> <at>` for every stamped
//! frame: its number, send time on the bench clock (µs) and arrival time
//! (Unix µs; the parent puts it on the bench clock).

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::mpsc;

use crate::deliveries::{read_stamps, unix_us};
use crate::scenarios::{connections, open_users};

pub async fn run(gateway: &str, secret: &str) -> anyhow::Result<()> {
    let (out, mut lines_out) = mpsc::unbounded_channel::<String>();
    let writer = tokio::spawn(async move {
        let mut stdout = BufWriter::new(tokio::io::stdout());
        while let Some(line) = lines_out.recv().await {
            stdout.write_all(line.as_bytes()).await?;
            while let Ok(line) = lines_out.try_recv() {
                stdout.write_all(line.as_bytes()).await?;
            }
            stdout.flush().await?;
        }
        anyhow::Ok(())
    });

    let mut readers = Vec::new();
    let mut commands = BufReader::new(tokio::io::stdin()).lines();
    while let Some(command) = commands.next_line().await? {
        let words: Vec<&str> = command.split_whitespace().collect();
        match words.as_slice() {
            ["connect", start, end] => {
                let users = start.parse()?..end.parse()?;
                readers.extend(
                    open_users(gateway, secret, users, connections::user, true, |socket| {
                        let out = out.clone();
                        tokio::spawn(read_stamps(socket, move |k, t| {
                            let _ = out.send(format!("f {k} {t} {}\n", unix_us()));
                        }))
                    })
                    .await?,
                );
                out.send(format!("connected {}\n", readers.len()))?;
            }
            ["count"] => {
                let open = readers.iter().filter(|r| !r.is_finished()).count();
                out.send(format!("open {open}\n"))?;
            }
            other => anyhow::bail!("holder: unknown command {other:?}"),
        }
    }
    readers.iter().for_each(|r| r.abort());
    drop(out);
    writer.await?
}
