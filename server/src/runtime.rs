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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Which CPUs the process (every thread it starts from now on) runs on.
    pub cpus: Pinned,
    pub worker_threads: usize,
}

/// Where a [`Plan`] puts the process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pinned {
    /// Wherever the operating system puts it (the CPUs it was given).
    No,
    /// The CPU it is running on when the runtime is built.
    One,
    /// These CPUs.
    To(Vec<usize>),
}

impl Plan {
    /// `cpus` unset: `one` on SQLite (the database runs inside this process, one statement at a
    /// time), `all` on PostgreSQL (which may run on another machine). `worker_threads` unset: one
    /// with `one`, one per CPU listed, otherwise one per CPU available.
    pub fn of(cpus: Option<Cpus>, worker_threads: Option<usize>, backend: Option<Backend>, available: usize) -> Plan {
        let cpus = cpus.unwrap_or(match backend {
            Some(Backend::Sqlite) => Cpus::One,
            _ => Cpus::All,
        });
        let (cpus, default_workers) = match cpus {
            Cpus::All => (Pinned::No, available.max(1)),
            Cpus::One => (Pinned::One, 1),
            Cpus::Listed(list) => {
                let n = list.len().max(1);
                (Pinned::To(list), n)
            }
        };
        Plan { cpus, worker_threads: worker_threads.unwrap_or(default_workers) }
    }

    /// Applies the plan to the calling thread (before any other thread is started, so that they
    /// all inherit it) and builds the runtime.
    pub fn build(&self) -> std::io::Result<tokio::runtime::Runtime> {
        match &self.cpus {
            Pinned::No => {}
            // Processes started one after another land on different CPUs, as the scheduler
            // placed them.
            Pinned::One => pin_to(&[nix::sched::sched_getcpu()?])?,
            Pinned::To(list) => pin_to(list)?,
        }
        tokio::runtime::Builder::new_multi_thread().worker_threads(self.worker_threads).enable_all().build()
    }
}

/// The CPUs other than the one this process is pinned to, when it is pinned to one and there are
/// others ([`Pinned::One`]); None otherwise. For a helper process this one starts (the bench's
/// processor sandbox, as its `PAYSTAGE_CPUS`), which would otherwise inherit the pin and share
/// the one CPU.
pub fn cpus_beside_this_process() -> Option<Vec<usize>> {
    use nix::sched::{sched_getaffinity, CpuSet};
    let mine = sched_getaffinity(nix::unistd::Pid::from_raw(0)).ok()?;
    let pinned: Vec<usize> = (0..CpuSet::count()).filter(|i| mine.is_set(*i).unwrap_or(false)).collect();
    let online = cpu_list(&std::fs::read_to_string("/sys/devices/system/cpu/online").ok()?)?;
    let [cpu] = pinned[..] else { return None };
    let others: Vec<usize> = online.into_iter().filter(|i| *i != cpu).collect();
    (!others.is_empty()).then_some(others)
}

/// The CPUs of a kernel CPU list (`/sys/devices/system/cpu/online`, `PAYSTAGE_CPUS`:
/// `0-3,6,8-9`), or None if it is not one.
pub fn cpu_list(list: &str) -> Option<Vec<usize>> {
    let max = nix::sched::CpuSet::count();
    let mut cpus = Vec::new();
    for part in list.trim().split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b) = (a.trim().parse::<usize>().ok()?, b.trim().parse::<usize>().ok()?);
        if a > b || b >= max {
            return None;
        }
        cpus.extend(a..=b);
    }
    cpus.sort_unstable();
    cpus.dedup();
    Some(cpus)
}

/// Restricts the calling thread, and every thread it starts afterwards, to `cpus`.
fn pin_to(cpus: &[usize]) -> std::io::Result<()> {
    use nix::sched::{sched_setaffinity, CpuSet};
    let mut set = CpuSet::new();
    for cpu in cpus {
        set.set(*cpu)?;
    }
    sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_cpu_lists_are_read() {
        assert_eq!(cpu_list("0-1\n"), Some(vec![0, 1]));
        assert_eq!(cpu_list("0-3,6,8-9"), Some(vec![0, 1, 2, 3, 6, 8, 9]));
        assert_eq!(cpu_list("1"), Some(vec![1]));
        for bad in ["", "two", "3-1", "1,,2", "-1", "99999999", "0-99999999"] {
            assert_eq!(cpu_list(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_helper_process_runs_beside_a_pinned_one() {
        std::thread::spawn(|| {
            let rt = Plan { cpus: Pinned::One, worker_threads: 1 }.build().unwrap();
            drop(rt);
            let mine = nix::sched::sched_getcpu().unwrap();
            let online = cpu_list(&std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap()).unwrap();
            match cpus_beside_this_process() {
                Some(others) => assert_eq!(others, online.into_iter().filter(|c| *c != mine).collect::<Vec<_>>(), "every CPU but the pinned one"),
                None => assert_eq!(online.len(), 1, "only a one-CPU machine has none beside"),
            }
            // And a process told those CPUs runs on them.
            if let Some(others) = cpus_beside_this_process() {
                let rt = Plan::of(Some(Cpus::Listed(others.clone())), None, Some(Backend::Sqlite), 2).build().unwrap();
                let cpu = rt.block_on(async { tokio::spawn(async { nix::sched::sched_getcpu().unwrap() }).await.unwrap() });
                assert!(others.contains(&cpu), "ran on {cpu}, told {others:?}");
            }
        })
        .join()
        .unwrap();
    }

    #[test]
    fn sqlite_runs_on_one_cpu_and_postgresql_on_all_unless_told() {
        assert_eq!(Plan::of(None, None, Some(Backend::Sqlite), 8), Plan { cpus: Pinned::One, worker_threads: 1 });
        assert_eq!(Plan::of(None, None, Some(Backend::Postgres), 8), Plan { cpus: Pinned::No, worker_threads: 8 });
        assert_eq!(Plan::of(Some(Cpus::All), None, Some(Backend::Sqlite), 2), Plan { cpus: Pinned::No, worker_threads: 2 });
        assert_eq!(Plan::of(Some(Cpus::One), None, Some(Backend::Postgres), 2), Plan { cpus: Pinned::One, worker_threads: 1 });
        assert_eq!(Plan::of(None, Some(1), Some(Backend::Postgres), 2), Plan { cpus: Pinned::No, worker_threads: 1 });
        assert_eq!(Plan::of(Some(Cpus::One), Some(3), None, 2), Plan { cpus: Pinned::One, worker_threads: 3 });
        assert_eq!(Plan::of(Some(Cpus::Listed(vec![1])), None, Some(Backend::Sqlite), 2), Plan { cpus: Pinned::To(vec![1]), worker_threads: 1 });
    }

    #[test]
    fn a_pinned_runtime_runs_every_worker_on_one_cpu() {
        // In a thread of its own: pinning is per thread and must not leak into other tests.
        std::thread::spawn(|| {
            let rt = Plan { cpus: Pinned::One, worker_threads: 2 }.build().unwrap();
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
