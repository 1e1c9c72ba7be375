//! Scenario 11: the default drain next to the LPOP baseline, in pairs. This machine's speed
//! drifts by a fifth within minutes (its other tenants), and the baseline at the start of a run
//! and a drain a minute later may fall on either side of a drift. Each pair measures
//! redis-benchmark's unpipelined LPOP and, right after it, the default drain (results kept,
//! events on); the ratio of each pair is its own, and the report gives the median of them.

use super::Bench;
use super::drain::{self, Variant};
use crate::Result;
use crate::baseline::{self, ServerAddr};
use crate::report::Outcome;

/// Runs `pairs` pairs of (LPOP baseline, default drain of `jobs` at `concurrency`).
pub async fn run(
    bench: &mut Bench,
    server: &ServerAddr,
    jobs: u64,
    concurrency: usize,
    pairs: usize,
) -> Result<Vec<Outcome>> {
    let mut outcomes = Vec::new();
    for pair in 1..=pairs {
        eprintln!("11. pair {pair} of {pairs}: LPOP baseline, then a drain of {jobs} jobs ...");
        let lpop = baseline::lpop_rate(server).await?;
        let mut outcome = drain::drain(bench, jobs, concurrency, Variant::Default).await?;
        outcome.scenario = 11;
        outcome.paired_lpop = Some(lpop);
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// The median of `ratios` (none: 0).
pub fn median(mut ratios: Vec<f64>) -> f64 {
    ratios.sort_by(f64::total_cmp);
    match ratios.len() {
        0 => 0.0,
        n if n % 2 == 1 => ratios[n / 2],
        n => (ratios[n / 2 - 1] + ratios[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_is_the_middle_one_or_the_mean_of_the_middle_two() {
        assert_eq!(median(vec![1.6, 1.2, 1.4]), 1.4);
        assert_eq!(median(vec![1.0, 2.0, 4.0, 3.0]), 2.5);
        assert_eq!(median(Vec::new()), 0.0);
    }
}
