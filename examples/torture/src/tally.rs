//! Counting at the end of a scenario: which jobs ran, ran twice, died or were lost, and where
//! the jobs left behind are, with evidence from dtask's keys for the report.

use std::collections::HashSet;

use crate::effects;
use crate::report::Figures;
use crate::rig::{Leftovers, Rig, job_id};
use crate::tasks;

/// The count of jobs at the end of a scenario.
#[derive(Debug, Default)]
pub struct Tally {
    /// Jobs enqueued `Ok`.
    pub enqueued: u64,
    /// Of those, jobs that ran at least once.
    pub done: u64,
    /// Jobs enqueued `Ok` that neither ran nor are in the dead set.
    pub lost: Vec<u64>,
    /// Runs beyond the first, summed over all jobs.
    pub duplicates: u64,
    /// Jobs that ran more than once.
    pub ran_twice: Vec<u64>,
    /// Counted jobs (see [`tasks::COUNTED`]) in the dead set: id and error.
    pub dead: Vec<(u64, String)>,
    /// Jobs that ran though their enqueue returned an error (it reached Redis, its reply did not
    /// reach us).
    pub phantoms: u64,
    /// Where the jobs are once settled.
    pub leftovers: Leftovers,
    /// The ids enqueued `Ok`, to tell them from phantoms in a report.
    pub enqueued_ids: HashSet<u64>,
}

impl Rig {
    /// What is in flight on `queues`, by worker: for the report of jobs left behind.
    pub async fn describe_in_flight(
        &self,
        queues: &[&str],
        enqueued: &HashSet<u64>,
    ) -> Vec<String> {
        let mut lines = Vec::new();
        let mut conn = self.conn();
        for queue in queues {
            let Ok(keys) = self.in_flight_keys(queue, "*").await else {
                continue;
            };
            for key in keys {
                let payloads = self.members(&key).await.unwrap_or_default();
                let worker = key.rsplit(':').next().unwrap_or_default().to_owned();
                let heartbeat: Option<u64> = redis::cmd("ZSCORE")
                    .arg(format!("{}:{{{queue}}}:workers", self.prefix))
                    .arg(&worker)
                    .query_async(&mut conn)
                    .await
                    .unwrap_or_default();
                let beat = heartbeat.map_or_else(
                    || "not registered".to_owned(),
                    |ms| {
                        format!(
                            "last heartbeat {} ms ago",
                            effects::now_ms().saturating_sub(ms)
                        )
                    },
                );
                let shown: Vec<String> = payloads
                    .iter()
                    .take(3)
                    .map(|p| {
                        let whose = match job_id(p) {
                            Some(id) if enqueued.contains(&id) => "enqueued Ok",
                            Some(_) => "its enqueue had returned an error",
                            None => "not a counted job",
                        };
                        let text: String = p.chars().take(120).collect();
                        format!("{text} ({whose})")
                    })
                    .collect();
                lines.push(format!(
                    "{key}: {} job(s) ({beat}), e.g. {}",
                    payloads.len(),
                    shown.join(" ")
                ));
            }
        }
        lines
    }

    /// The counted jobs (see [`tasks::COUNTED`]) in the dead sets of `queues`: id and error.
    pub async fn dead_counted(&self, queues: &[&str]) -> Result<Vec<(u64, String)>, String> {
        let mut dead = Vec::new();
        for queue in queues {
            for job in self
                .admin
                .queue(queue)
                .dead_jobs(1_000_000)
                .await
                .map_err(|e| e.to_string())?
            {
                if job
                    .task
                    .as_deref()
                    .is_some_and(|task| tasks::COUNTED.contains(&task))
                    && let Some(id) = job_id(&job.payload)
                {
                    dead.push((id, job.error));
                }
            }
        }
        Ok(dead)
    }

    /// Counts what became of the jobs in `enqueued`.
    pub async fn tally(&self, enqueued: &HashSet<u64>, queues: &[&str]) -> Result<Tally, String> {
        let mut conn = self.conn();
        let done = self.fx.done(&mut conn).await.map_err(|e| e.to_string())?;
        let runs = self.fx.runs(&mut conn).await.map_err(|e| e.to_string())?;
        let dead = self.dead_counted(queues).await?;
        let dead_ids: HashSet<u64> = dead.iter().map(|(id, _)| *id).collect();
        let mut lost: Vec<u64> = enqueued
            .iter()
            .filter(|id| !done.contains(id) && !dead_ids.contains(id))
            .copied()
            .collect();
        lost.sort_unstable();
        let mut ran_twice: Vec<u64> = runs
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(id, _)| *id)
            .collect();
        ran_twice.sort_unstable();
        Ok(Tally {
            enqueued: enqueued.len() as u64,
            done: enqueued.iter().filter(|id| done.contains(id)).count() as u64,
            lost,
            duplicates: runs.values().map(|n| n.saturating_sub(1)).sum(),
            ran_twice,
            dead,
            phantoms: done.iter().filter(|id| !enqueued.contains(id)).count() as u64,
            leftovers: self.leftovers(queues).await?,
            enqueued_ids: enqueued.clone(),
        })
    }

    /// Finds where job `id` is in dtask's keys, for the report of a lost job.
    pub async fn locate(&self, id: u64) -> String {
        let needle = format!("\"a\":[{id},");
        let Ok(keys) = self.keys(&format!("{}:*", self.prefix)).await else {
            return "keys unreadable".to_owned();
        };
        let mut found = Vec::new();
        for key in keys {
            let members = self.members(&key).await.unwrap_or_default();
            if members.iter().any(|m| m.contains(&needle)) {
                found.push(key);
            }
        }
        if found.is_empty() {
            "in no dtask key".to_owned()
        } else {
            format!("in {}", found.join(", "))
        }
    }

    /// Copies a tally into `figures` and checks the invariants every scenario shares: no job
    /// lost, nothing left pending or in flight, no counted job dead unless `dead_allowed`.
    pub async fn conclude(
        &self,
        figures: &mut Figures,
        tally: &Tally,
        queues: &[&str],
        dead_allowed: bool,
    ) {
        figures.enqueued = tally.enqueued;
        figures.done = tally.done;
        figures.lost = tally.lost.len() as u64;
        figures.duplicates = tally.duplicates;
        if !tally.lost.is_empty() {
            let mut evidence = Vec::new();
            for id in tally.lost.iter().take(5) {
                evidence.push(format!("job {id} {}", self.locate(*id).await));
            }
            figures.failures.push(format!(
                "{} job(s) lost (enqueued Ok, never ran, not dead), e.g. {}",
                tally.lost.len(),
                evidence.join("; ")
            ));
        }
        let left = tally.leftovers;
        if !left.settled() {
            let mut evidence = self.describe_in_flight(queues, &tally.enqueued_ids).await;
            if left.pending > 0 {
                evidence.push("(pending jobs: no worker took them)".to_owned());
            }
            figures.failures.push(format!(
                "jobs left behind: {} pending, {} scheduled, {} retrying, {} in flight{}{}",
                left.pending,
                left.scheduled,
                left.retry,
                left.in_flight,
                if evidence.is_empty() { "" } else { ": " },
                evidence.join("; ")
            ));
        }
        if !dead_allowed {
            figures.check(tally.dead.is_empty(), || {
                format!(
                    "{} good job(s) in the dead set, e.g. job {} ({})",
                    tally.dead.len(),
                    tally.dead[0].0,
                    tally.dead[0].1
                )
            });
        }
        if tally.phantoms > 0 {
            figures.note(format!(
                "{} job(s) ran whose enqueue had returned an error (not counted as enqueued)",
                tally.phantoms
            ));
        }
    }
}
