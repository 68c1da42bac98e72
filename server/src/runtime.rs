//! The async runtime every `paystage` command runs on, and which CPUs it uses
//! (`PAYSTAGE_CPUS`, `PAYSTAGE_WORKER_THREADS`).
//!
//! Every SQL statement is a hand-off between threads: on SQLite to the thread sqlx runs the one
//! connection on and back, on PostgreSQL to a server process and back. When the two sides wake
//! each other on different CPUs, each hand-off costs a cross-CPU wake-up, and on a virtual machine
//! that is an exit to the hypervisor. Measured on the 2-core machines Paystage is developed on
//! (issue #3, README "Benchmarks"): `perf` put most of the invoicing benchmark's CPU time in the
//! kernel's wake-up and task-switch paths, and the same binary invoiced about twice as fast on
//! SQLite with the whole process on one CPU (`one`: one runtime thread, sqlx's SQLite thread beside
//! it on the same CPU), and on PostgreSQL with one runtime thread.
use crate::config::Cpus;
use payments::db::Backend;

/// What the runtime of a process on `backend` looks like with these settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Pin the process (every thread it starts from now on) to the CPU it is running on.
    pub one_cpu: bool,
    pub worker_threads: usize,
}

impl Plan {
    /// `cpus` unset: `one` on SQLite (the database runs inside this process, one statement at a
    /// time), `all` on PostgreSQL (which may run on another machine). `worker_threads` unset: one
    /// with `one`, otherwise one per CPU available.
    pub fn of(cpus: Option<Cpus>, worker_threads: Option<usize>, backend: Option<Backend>, available: usize) -> Plan {
        let cpus = cpus.unwrap_or(match backend {
            Some(Backend::Sqlite) => Cpus::One,
            _ => Cpus::All,
        });
        let one_cpu = cpus == Cpus::One;
        let default_workers = if one_cpu { 1 } else { available.max(1) };
        Plan { one_cpu, worker_threads: worker_threads.unwrap_or(default_workers) }
    }

    /// Applies the plan to the calling thread (before any other thread is started, so that they
    /// all inherit it) and builds the runtime.
    pub fn build(self) -> std::io::Result<tokio::runtime::Runtime> {
        if self.one_cpu {
            pin_to_current_cpu()?;
        }
        tokio::runtime::Builder::new_multi_thread().worker_threads(self.worker_threads).enable_all().build()
    }
}

/// Restricts the calling thread, and every thread it starts afterwards, to the CPU it runs on now.
/// Processes started one after another land on different CPUs, as the scheduler placed them.
fn pin_to_current_cpu() -> std::io::Result<()> {
    use nix::sched::{sched_getcpu, sched_setaffinity, CpuSet};
    let cpu = sched_getcpu()?;
    let mut set = CpuSet::new();
    set.set(cpu)?;
    sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_runs_on_one_cpu_and_postgresql_on_all_unless_told() {
        assert_eq!(Plan::of(None, None, Some(Backend::Sqlite), 8), Plan { one_cpu: true, worker_threads: 1 });
        assert_eq!(Plan::of(None, None, Some(Backend::Postgres), 8), Plan { one_cpu: false, worker_threads: 8 });
        assert_eq!(Plan::of(Some(Cpus::All), None, Some(Backend::Sqlite), 2), Plan { one_cpu: false, worker_threads: 2 });
        assert_eq!(Plan::of(Some(Cpus::One), None, Some(Backend::Postgres), 2), Plan { one_cpu: true, worker_threads: 1 });
        assert_eq!(Plan::of(None, Some(1), Some(Backend::Postgres), 2), Plan { one_cpu: false, worker_threads: 1 });
        assert_eq!(Plan::of(Some(Cpus::One), Some(3), None, 2), Plan { one_cpu: true, worker_threads: 3 });
    }

    #[test]
    fn a_pinned_runtime_runs_every_worker_on_one_cpu() {
        // In a thread of its own: pinning is per thread and must not leak into other tests.
        std::thread::spawn(|| {
            let rt = Plan { one_cpu: true, worker_threads: 2 }.build().unwrap();
            let cpus = rt.block_on(async {
                let mut seen = std::collections::HashSet::new();
                for _ in 0..50 {
                    let cpu = tokio::spawn(async { nix::sched::sched_getcpu().unwrap() }).await.unwrap();
                    seen.insert(cpu);
                    tokio::task::yield_now().await;
                }
                seen
            });
            assert_eq!(cpus.len(), 1, "workers ran on {cpus:?}");
        })
        .join()
        .unwrap();
    }
}
