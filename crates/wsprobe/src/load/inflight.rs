//! The pings of one connection that are still waiting for their echo, and the verdict
//! on each echo that comes back: on time, late, duplicated or unknown.
//!
//! Sequences of a connection are consecutive (0, 1, 2, …), so the pings in flight are a
//! window `[base, base + len)` kept in a ring. A ping leaves the window when its echo
//! arrives or when it has waited longer than the timeout; a ping that timed out is
//! remembered as overdue, so that a late echo is told apart from a duplicate, and at the
//! end every overdue ping without an echo is lost. An idle connection holds no memory
//! here (an empty ring allocates nothing).

use std::collections::VecDeque;

/// One ping in the window.
#[derive(Clone, Copy, Debug)]
struct Slot {
    /// When latency is measured from (the scheduled or the actual send), µs since start.
    since_us: u64,
    /// Its echo (or an error frame answering it) has arrived.
    answered: bool,
}

/// The verdict on an echo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EchoVerdict {
    /// Within the timeout; the round trip in µs.
    OnTime(u64),
    /// After the timeout; the round trip in µs.
    Late(u64),
    /// Its sequence was already echoed.
    Duplicate,
    /// A sequence this connection never sent.
    Unknown,
}

/// The pings of one connection awaiting their echo.
#[derive(Debug)]
pub(crate) struct InFlight {
    /// Sequence of the window's first slot.
    base: u64,
    window: VecDeque<Slot>,
    /// Pings that timed out without an echo, by sequence (ascending), with `since_us`.
    overdue: Vec<(u64, u64)>,
    /// Unanswered slots in the window.
    waiting: usize,
    timeout_us: u64,
}

impl InFlight {
    /// Nothing in flight; echoes later than `timeout_us` are late.
    pub(crate) fn new(timeout_us: u64) -> Self {
        Self {
            base: 0,
            window: VecDeque::new(),
            overdue: Vec::new(),
            waiting: 0,
            timeout_us,
        }
    }

    /// The sequence the next ping gets.
    pub(crate) fn next_sequence(&self) -> u64 {
        self.base + self.window.len() as u64
    }

    /// Records that ping [`next_sequence`](Self::next_sequence) was sent; its latency
    /// will be measured from `since_us`.
    pub(crate) fn sent(&mut self, since_us: u64) {
        self.window.push_back(Slot {
            since_us,
            answered: false,
        });
        self.waiting += 1;
    }

    /// Takes back the last [`sent`](Self::sent) ping: it never left (the send failed).
    pub(crate) fn unsend(&mut self) {
        if let Some(slot) = self.window.pop_back()
            && !slot.answered
        {
            self.waiting -= 1;
        }
    }

    /// Pings sent and neither answered nor timed out.
    pub(crate) fn waiting(&self) -> usize {
        self.waiting
    }

    /// The verdict on an echo of `sequence` arriving at `now_us`.
    pub(crate) fn echo(&mut self, sequence: u64, now_us: u64) -> EchoVerdict {
        if sequence >= self.next_sequence() {
            return EchoVerdict::Unknown;
        }
        if sequence < self.base {
            return match self.overdue.binary_search_by_key(&sequence, |&(s, _)| s) {
                Ok(index) => {
                    let (_, since_us) = self.overdue.remove(index);
                    EchoVerdict::Late(now_us.saturating_sub(since_us))
                }
                Err(_) => EchoVerdict::Duplicate,
            };
        }
        let slot = &mut self.window[(sequence - self.base) as usize];
        if slot.answered {
            return EchoVerdict::Duplicate;
        }
        slot.answered = true;
        self.waiting -= 1;
        let latency = now_us.saturating_sub(slot.since_us);
        self.retire_answered();
        if latency > self.timeout_us {
            EchoVerdict::Late(latency)
        } else {
            EchoVerdict::OnTime(latency)
        }
    }

    /// An error frame arrived instead of an echo: it answers the oldest waiting ping
    /// (so that ping is neither lost nor waited for). False when none is waiting.
    pub(crate) fn answer_oldest(&mut self) -> bool {
        let Some(slot) = self.window.iter_mut().find(|slot| !slot.answered) else {
            return false;
        };
        slot.answered = true;
        self.waiting -= 1;
        self.retire_answered();
        true
    }

    /// A damaged echo of `sequence` arrived: the ping is answered (badly), so it is
    /// neither waited for nor lost. False when `sequence` was not waiting or overdue.
    pub(crate) fn settle(&mut self, sequence: u64) -> bool {
        if sequence >= self.next_sequence() {
            return false;
        }
        if sequence < self.base {
            return match self.overdue.binary_search_by_key(&sequence, |&(s, _)| s) {
                Ok(index) => {
                    self.overdue.remove(index);
                    true
                }
                Err(_) => false,
            };
        }
        let slot = &mut self.window[(sequence - self.base) as usize];
        if slot.answered {
            return false;
        }
        slot.answered = true;
        self.waiting -= 1;
        self.retire_answered();
        true
    }

    /// Moves pings that have waited longer than the timeout at `now_us` to the overdue
    /// list.
    pub(crate) fn expire(&mut self, now_us: u64) {
        while let Some(front) = self.window.front() {
            if !front.answered && now_us.saturating_sub(front.since_us) <= self.timeout_us {
                break;
            }
            if !front.answered {
                self.overdue.push((self.base, front.since_us));
                self.waiting -= 1;
            }
            self.window.pop_front();
            self.base += 1;
        }
    }

    /// When the oldest waiting ping times out (µs since start), if one is waiting.
    pub(crate) fn next_expiry(&self) -> Option<u64> {
        self.window
            .iter()
            .find(|slot| !slot.answered)
            .map(|slot| slot.since_us.saturating_add(self.timeout_us))
    }

    /// Pings that timed out and have not come back (late) yet.
    pub(crate) fn overdue(&self) -> u64 {
        self.overdue.len() as u64
    }

    /// Pings never echoed: overdue ones and those still waiting. Called once, at the end.
    pub(crate) fn lost(&self) -> u64 {
        (self.overdue.len() + self.waiting) as u64
    }

    /// The connection closed and is being reopened: forgets every ping, and returns
    /// `(overdue, waiting)`: those that had already timed out (lost to the server) and
    /// those still within the timeout (lost to the reconnect). Sequences go on from where
    /// they were, so an echo can never be matched with a ping of the old connection.
    pub(crate) fn abandon(&mut self) -> (u64, u64) {
        let counts = (self.overdue.len() as u64, self.waiting as u64);
        self.base = self.next_sequence();
        self.window.clear();
        self.overdue.clear();
        self.waiting = 0;
        counts
    }

    fn retire_answered(&mut self) {
        while self.window.front().is_some_and(|slot| slot.answered) {
            self.window.pop_front();
            self.base += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abandoning_splits_overdue_from_waiting_and_keeps_sequences_going() {
        let mut inflight = InFlight::new(100);
        for since in [0, 10, 500] {
            inflight.sent(since);
        }
        inflight.expire(300);
        assert_eq!(inflight.abandon(), (2, 1));
        assert_eq!((inflight.waiting(), inflight.lost()), (0, 0));
        assert_eq!(inflight.next_sequence(), 3);
        assert_eq!(inflight.echo(1, 600), EchoVerdict::Duplicate);
        inflight.sent(700);
        assert!(matches!(inflight.echo(3, 710), EchoVerdict::OnTime(10)));
    }

    #[test]
    fn in_order_echoes_are_on_time() {
        let mut inflight = InFlight::new(1_000);
        for at in [0, 10, 20] {
            inflight.sent(at);
        }
        assert_eq!(inflight.waiting(), 3);
        assert_eq!(inflight.echo(0, 100), EchoVerdict::OnTime(100));
        assert_eq!(inflight.echo(2, 150), EchoVerdict::OnTime(130));
        assert_eq!(inflight.echo(1, 160), EchoVerdict::OnTime(150));
        assert_eq!(inflight.waiting(), 0);
        assert_eq!(inflight.next_sequence(), 3);
        assert_eq!(inflight.lost(), 0);
        assert!(
            inflight.window.is_empty(),
            "answered pings leave the window"
        );
    }

    #[test]
    fn duplicates_and_unknown_sequences() {
        let mut inflight = InFlight::new(1_000);
        inflight.sent(0);
        inflight.sent(0);
        assert_eq!(inflight.echo(1, 5), EchoVerdict::OnTime(5));
        assert_eq!(
            inflight.echo(1, 6),
            EchoVerdict::Duplicate,
            "still in the window"
        );
        assert_eq!(inflight.echo(0, 7), EchoVerdict::OnTime(7));
        assert_eq!(inflight.echo(0, 8), EchoVerdict::Duplicate, "retired");
        assert_eq!(inflight.echo(2, 9), EchoVerdict::Unknown);
        assert_eq!(inflight.lost(), 0);
    }

    #[test]
    fn timeouts_then_late_echoes_then_losses() {
        let mut inflight = InFlight::new(100);
        inflight.sent(0);
        inflight.sent(50);
        inflight.sent(60);
        assert_eq!(inflight.next_expiry(), Some(100));
        inflight.expire(100);
        assert_eq!(inflight.waiting(), 3, "not yet past the timeout");
        inflight.expire(155);
        assert_eq!(inflight.waiting(), 1);
        assert_eq!(inflight.next_expiry(), Some(160));
        assert_eq!(inflight.echo(1, 170), EchoVerdict::Late(120));
        assert_eq!(inflight.echo(1, 171), EchoVerdict::Duplicate);
        // Arrived before expire() ran, but after the timeout: late all the same.
        assert_eq!(inflight.echo(2, 200), EchoVerdict::Late(140));
        assert_eq!(inflight.waiting(), 0);
        assert_eq!(inflight.overdue(), 1);
        assert_eq!(inflight.lost(), 1, "sequence 0 never came back");
    }

    #[test]
    fn error_frames_answer_the_oldest() {
        let mut inflight = InFlight::new(100);
        assert!(!inflight.answer_oldest());
        inflight.sent(0);
        inflight.sent(1);
        assert!(inflight.answer_oldest());
        assert_eq!(inflight.waiting(), 1);
        assert_eq!(inflight.echo(0, 2), EchoVerdict::Duplicate);
        assert_eq!(inflight.next_expiry(), Some(101));
        inflight.expire(1_000);
        assert_eq!(inflight.lost(), 1);
    }

    #[test]
    fn damaged_echoes_settle_their_ping() {
        let mut inflight = InFlight::new(100);
        inflight.sent(0);
        inflight.sent(0);
        assert!(inflight.settle(1));
        assert!(!inflight.settle(1), "already answered");
        assert!(!inflight.settle(5), "never sent");
        inflight.expire(500);
        assert!(inflight.settle(0), "overdue, then answered");
        assert!(!inflight.settle(0));
        assert_eq!(inflight.lost(), 0);
    }

    #[test]
    fn a_failed_send_is_taken_back() {
        let mut inflight = InFlight::new(100);
        inflight.sent(0);
        inflight.unsend();
        assert_eq!(inflight.waiting(), 0);
        assert_eq!(inflight.next_sequence(), 0);
        assert_eq!(inflight.lost(), 0);
    }
}
