//! Writes N Nexmark bids as `auction<TAB>json` lines, for `weir produce -k`
//! (scripts/bench-nexmark.sh): the generator of `weir_tests::bids`, 10 000
//! events per second of event time, out of order within groups of 1 000
//! events (0.1 s), deterministic.
//!
//!     nexmark-bids N > bids.tsv

use std::io::{BufWriter, Write};

use anyhow::{Context, Result};
use weir_tests::bids::bid_stream;

fn main() -> Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .context("usage: nexmark-bids N")?
        .parse()
        .context("N: a number of bids")?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    for b in bid_stream(10_000, 1_000).take(n) {
        writeln!(out, "{}\t{}", b.key(), b.json())?;
    }
    out.flush()?;
    Ok(())
}
