//! Work that arrives together is done together: callers queue their work, and whoever gets the
//! turn while its own work still waits does everything waiting (the invoice batches of
//! [`crate::pipeline`] and the simulator's desk). This is the wait every such caller
//! makes.

use tokio::sync::{oneshot, Mutex, OwnedMutexGuard};
use std::sync::Arc;

/// How a caller's wait for a turn ended.
pub(crate) enum Waited<T> {
    /// The caller has the turn (its work may still be waiting, or an earlier turn may have taken it).
    Turn(OwnedMutexGuard<()>),
    /// Another turn took the caller's work and answered (or dropped the reply: `Err`).
    Answered(Result<T, oneshot::error::RecvError>),
}

/// Waits for `turn`, or for `answer` if another turn answers first. Either way the caller leaves
/// the turn's queue here: a caller that stayed queued while its work ran on elsewhere would be
/// granted the turn in its place and hold it, unused, until that work ended (issue #3: a group
/// waiting on the processor held back the next group so).
pub(crate) async fn turn_or_answer<T>(turn: &Arc<Mutex<()>>, answer: &mut oneshot::Receiver<T>) -> Waited<T> {
    let lock = turn.clone().lock_owned();
    tokio::pin!(lock);
    tokio::select! {
        biased;
        done = &mut *answer => Waited::Answered(done),
        held = &mut lock => Waited::Turn(held),
    }
}

/// The work a turn takes out of `waiting`: nothing if the turn holder's own (`mine`) is no longer
/// there (an earlier turn took it and answers it; taking the others now would split them into
/// turns of one); otherwise all of it, or at most `max`, the holder's own among them and the
/// others oldest first. Everything left waiting has a caller still waiting for the turn, who takes
/// it with a later turn.
pub(crate) fn take_group<T>(waiting: &mut Vec<T>, mine: impl Fn(&T) -> bool, max: usize) -> Vec<T> {
    if !waiting.iter().any(&mine) {
        return Vec::new();
    }
    if waiting.len() <= max {
        return std::mem::take(waiting);
    }
    let mut taken = Vec::with_capacity(max);
    let mut rest = Vec::with_capacity(waiting.len() - max);
    let mut others = max.saturating_sub(1);
    for job in waiting.drain(..) {
        if mine(&job) {
            taken.push(job);
        } else if others > 0 {
            others -= 1;
            taken.push(job);
        } else {
            rest.push(job);
        }
    }
    *waiting = rest;
    taken
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_turn_takes_its_holders_invoicing_and_the_oldest_others() {
        // Issue 3, R-PIP-1: a turn of at most 3 out of 5 waiting, its holder the fourth.
        let mut waiting = vec![1, 2, 3, 4, 5];
        assert_eq!(take_group(&mut waiting, |j| *j == 4, 3), vec![1, 2, 4]);
        assert_eq!(waiting, vec![3, 5], "the rest wait for a later turn, in order");
        assert_eq!(take_group(&mut waiting, |j| *j == 5, 3), vec![3, 5], "fewer than the most: all of them");
        assert!(waiting.is_empty());
        let mut waiting = vec![1, 2, 3];
        assert_eq!(take_group(&mut waiting, |j| *j == 3, 1), vec![3], "the holder's own, even alone");
        assert_eq!(waiting, vec![1, 2]);
        assert!(take_group(&mut waiting, |j| *j == 3, 8).is_empty(), "the holder's own taken by an earlier turn: nothing");
        assert_eq!(waiting, vec![1, 2], "the others wait for their own callers' turns");
    }

    #[tokio::test]
    async fn an_answered_caller_leaves_the_queue_so_the_next_caller_gets_the_turn() {
        // Issue 3, R-PIP-1: a caller answered by another turn, whose work runs on, must not be
        // granted the turn in place of the next caller (tokio's mutex grants in queue order).
        let turn = Arc::new(Mutex::new(()));
        let held = turn.clone().lock_owned().await;
        let (reply, mut answer) = oneshot::channel::<u8>();
        let (second_reply, mut second_answer) = oneshot::channel::<u8>();
        let (keep_running, until) = oneshot::channel::<()>();
        let first = tokio::spawn({
            let turn = turn.clone();
            async move {
                let got = match turn_or_answer(&turn, &mut answer).await {
                    Waited::Answered(v) => v.ok(),
                    Waited::Turn(_) => None,
                };
                // Its work runs on after the answer (the invoicing's later stages).
                let _ = until.await;
                got
            }
        });
        let second = tokio::spawn({
            let turn = turn.clone();
            async move { matches!(turn_or_answer(&turn, &mut second_answer).await, Waited::Turn(_)) }
        });
        tokio::task::yield_now().await;
        reply.send(7).unwrap();
        tokio::task::yield_now().await;
        drop(held);
        // The first caller has left the queue: the turn goes to the second, not to a caller that
        // no longer wants it.
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), second).await.expect("the second caller gets the turn").unwrap();
        assert!(got);
        keep_running.send(()).unwrap();
        assert_eq!(first.await.unwrap(), Some(7), "the first caller was answered while the turn was held");
        drop(second_reply);
    }
}
