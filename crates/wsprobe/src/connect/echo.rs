//! Background echo checks: after a route-tagged send, the echo expected under the current
//! policy ([`wsprobe_core::message::expected_echo`]) is awaited while the user goes on typing.
//!
//! How frames and checks are correlated (the same verdict `expect echo within T` gives in
//! a script, which scans the messages that arrive for the first that matches):
//!
//! - Pending checks form a FIFO, oldest first; each has its own deadline (`--echo-timeout`
//!   after its send).
//! - Each text or binary frame that arrives goes to the *oldest* pending check it matches
//!   ([`wsprobe_core::message::echo_matches`]: equal as JSON). That check passes and the frame is
//!   consumed (no other check can claim it). Only frames read after the check's send and
//!   no later than its deadline count.
//! - A frame that matches no pending check is an *unrelated message*: it is shown like any
//!   other and breaks nothing, but it becomes the *candidate* (the "actual" of a
//!   mismatch) of the oldest pending check that has none yet — unrelated frames are
//!   handed out in order, one per check, as echoes would be. When a check passes, its
//!   candidate is dropped: it was noise before that echo, not the answer to a later send.
//! - At its deadline, a check that saw no match fails: `✗ echo mismatch` with its
//!   candidate as "actual" if any frame arrived meanwhile, else `✗ no echo within T`.
//!   If the connection ends first, the check fails at once.
//!
//! Control frames (ping, pong, close) never take part. The tracker is pure logic on
//! instants, so it is tested without sockets.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde_json::Value;

use wsprobe_core::message::echo_matches;
use wsprobe_core::session::{Ending, Frame, Incoming};

/// One awaited echo.
#[derive(Clone, Debug)]
struct Pending {
    id: u64,
    expected: Value,
    sent_at: Instant,
    deadline: Instant,
    timeout: Duration,
    /// The unrelated data frame handed to this check, with its arrival: "actual".
    candidate: Option<(Instant, String)>,
}

impl Pending {
    /// Whether a frame read at `at` can be this check's echo (or its candidate).
    fn in_window(&self, at: Instant) -> bool {
        at >= self.sent_at && at <= self.deadline
    }
}

/// How an echo check ended.
#[derive(Clone, Debug, PartialEq)]
pub enum EchoOutcome {
    /// The echo arrived this long after the send.
    Matched {
        /// From the send to the arrival of the echo.
        latency: Duration,
    },
    /// Other messages arrived, none of them the echo; `actual` is the first of them.
    Mismatch {
        /// The echo that was expected.
        expected: Value,
        /// The first message that arrived after the send and matched no check.
        actual: String,
    },
    /// Nothing arrived within the timeout.
    Timeout {
        /// The echo that was expected.
        expected: Value,
        /// The check's timeout.
        after: Duration,
    },
    /// The connection ended before the echo arrived.
    Closed {
        /// The echo that was expected.
        expected: Value,
        /// How the connection ended.
        ending: Ending,
    },
}

impl EchoOutcome {
    /// Whether the check passed.
    pub fn passed(&self) -> bool {
        matches!(self, EchoOutcome::Matched { .. })
    }
}

/// A finished check: which one, and how it ended.
#[derive(Clone, Debug, PartialEq)]
pub struct EchoResult {
    /// The id [`EchoTracker::expect`] gave it.
    pub id: u64,
    /// How it ended.
    pub outcome: EchoOutcome,
}

/// The pending echo checks of one connection.
#[derive(Debug, Default)]
pub struct EchoTracker {
    pending: VecDeque<Pending>,
    next_id: u64,
}

/// What the tracker made of a received frame.
#[derive(Debug, Default, PartialEq)]
pub struct FrameVerdict {
    /// The check the frame was the echo of, if any.
    pub matched: Option<EchoResult>,
}

impl FrameVerdict {
    /// Whether the frame was an echo (consumed by its check).
    pub fn consumed(&self) -> bool {
        self.matched.is_some()
    }
}

impl EchoTracker {
    /// A tracker with no pending checks.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a check for a message sent at `sent_at` whose echo should be `expected`,
    /// failing after `timeout`. Register it *before* sending, so that an echo faster than
    /// the send's return is not missed. Returns the check's id.
    pub fn expect(&mut self, expected: Value, sent_at: Instant, timeout: Duration) -> u64 {
        self.next_id += 1;
        self.pending.push_back(Pending {
            id: self.next_id,
            expected,
            sent_at,
            deadline: sent_at + timeout,
            timeout,
            candidate: None,
        });
        self.next_id
    }

    /// Forgets a check whose message could not be sent.
    pub fn cancel(&mut self, id: u64) {
        self.pending.retain(|p| p.id != id);
    }

    /// Whether any check is still waiting.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Whether the check `id` is still waiting.
    pub fn is_pending(&self, id: u64) -> bool {
        self.pending.iter().any(|p| p.id == id)
    }

    /// The earliest deadline of a waiting check.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending.iter().map(|p| p.deadline).min()
    }

    /// Offers a received frame to the waiting checks (see the module doc).
    pub fn on_frame(&mut self, incoming: &Incoming) -> FrameVerdict {
        let text = match &incoming.frame {
            Frame::Text(text) => text.clone(),
            Frame::Binary(data) => match std::str::from_utf8(data) {
                Ok(text) => text.to_owned(),
                Err(_) => incoming.frame.to_string(),
            },
            _ => return FrameVerdict::default(),
        };
        let at = incoming.at;
        let position = self
            .pending
            .iter()
            .position(|p| p.in_window(at) && echo_matches(&p.expected, &text));
        if let Some(index) = position
            && let Some(pending) = self.pending.remove(index)
        {
            return FrameVerdict {
                matched: Some(EchoResult {
                    id: pending.id,
                    outcome: EchoOutcome::Matched {
                        latency: incoming.at.saturating_duration_since(pending.sent_at),
                    },
                }),
            };
        }
        self.hand_out(at, incoming.frame.to_string());
        FrameVerdict::default()
    }

    /// Gives an unrelated frame to the oldest check that has no candidate and was sent
    /// before it arrived.
    fn hand_out(&mut self, at: Instant, text: String) {
        if let Some(pending) = self
            .pending
            .iter_mut()
            .find(|p| p.candidate.is_none() && p.in_window(at))
        {
            pending.candidate = Some((at, text));
        }
    }

    /// Fails every check whose deadline is before `now`, oldest first.
    pub fn expire(&mut self, now: Instant) -> Vec<EchoResult> {
        let mut done = Vec::new();
        self.pending.retain(|p| {
            if p.deadline < now {
                done.push(EchoResult {
                    id: p.id,
                    outcome: match &p.candidate {
                        Some((_, actual)) => EchoOutcome::Mismatch {
                            expected: p.expected.clone(),
                            actual: actual.clone(),
                        },
                        None => EchoOutcome::Timeout {
                            expected: p.expected.clone(),
                            after: p.timeout,
                        },
                    },
                });
                false
            } else {
                true
            }
        });
        done
    }

    /// Fails every waiting check: the connection ended.
    pub fn close(&mut self, ending: &Ending) -> Vec<EchoResult> {
        self.pending
            .drain(..)
            .map(|p| EchoResult {
                id: p.id,
                outcome: EchoOutcome::Closed {
                    expected: p.expected,
                    ending: ending.clone(),
                },
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TIMEOUT: Duration = Duration::from_secs(5);

    fn text(at: Instant, text: &str) -> Incoming {
        Incoming {
            at,
            frame: Frame::Text(text.into()),
        }
    }

    #[test]
    fn an_echo_passes_with_its_latency() {
        let start = Instant::now();
        let mut tracker = EchoTracker::new();
        let id = tracker.expect(json!("Hello World!"), start, TIMEOUT);
        let verdict = tracker.on_frame(&text(start + Duration::from_millis(3), "\"Hello World!\""));
        assert_eq!(
            verdict.matched,
            Some(EchoResult {
                id,
                outcome: EchoOutcome::Matched {
                    latency: Duration::from_millis(3)
                }
            })
        );
        assert!(tracker.is_empty());
    }

    #[test]
    fn unrelated_messages_do_not_break_a_check() {
        let start = Instant::now();
        let mut tracker = EchoTracker::new();
        tracker.expect(json!("x"), start, TIMEOUT);
        let pushed = tracker.on_frame(&text(start + Duration::from_millis(1), "broadcast"));
        assert!(!pushed.consumed());
        let echo = tracker.on_frame(&text(start + Duration::from_millis(2), "\"x\""));
        assert!(echo.matched.unwrap().outcome.passed());
    }

    #[test]
    fn checks_are_correlated_in_order_and_each_frame_is_used_once() {
        let start = Instant::now();
        let mut tracker = EchoTracker::new();
        let first = tracker.expect(json!("same"), start, TIMEOUT);
        let second = tracker.expect(json!("same"), start, TIMEOUT);
        let a = tracker.on_frame(&text(start, "\"same\""));
        assert_eq!(a.matched.unwrap().id, first);
        let b = tracker.on_frame(&text(start, "\"same\""));
        assert_eq!(b.matched.unwrap().id, second);
        // A lost echo does not make the next one fail: the frame goes to the check it matches.
        let lost = tracker.expect(json!("lost"), start, TIMEOUT);
        let found = tracker.expect(json!("found"), start, TIMEOUT);
        let c = tracker.on_frame(&text(start, "\"found\""));
        assert_eq!(c.matched.unwrap().id, found);
        assert!(tracker.is_pending(lost));
    }

    #[test]
    fn a_check_with_other_messages_fails_as_a_mismatch_at_its_deadline() {
        let start = Instant::now();
        let mut tracker = EchoTracker::new();
        tracker.expect(json!({"action": "send", "body": "x"}), start, TIMEOUT);
        tracker.on_frame(&text(start + Duration::from_millis(1), "\"x\""));
        tracker.on_frame(&text(start + Duration::from_millis(2), "later"));
        assert!(
            tracker.expire(start + TIMEOUT).is_empty(),
            "not before the deadline"
        );
        let done = tracker.expire(start + TIMEOUT + Duration::from_millis(1));
        assert_eq!(
            done[0].outcome,
            EchoOutcome::Mismatch {
                expected: json!({"action": "send", "body": "x"}),
                actual: "\"x\"".into()
            }
        );
        assert!(tracker.is_empty());
    }

    #[test]
    fn unrelated_frames_are_handed_out_in_order() {
        let start = Instant::now();
        let later = start + TIMEOUT + Duration::from_millis(1);
        let mut tracker = EchoTracker::new();
        let first = tracker.expect(json!("a"), start, TIMEOUT);
        let second = tracker.expect(json!({"action": "send", "body": "b"}), start, TIMEOUT);
        // An error frame for something sent earlier, then the first echo, then the bare
        // body where the whole message was expected.
        tracker.on_frame(&text(start, "Forbidden"));
        assert_eq!(
            tracker.on_frame(&text(start, "\"a\"")).matched.unwrap().id,
            first
        );
        tracker.on_frame(&text(start, "\"b\""));
        let done = tracker.expire(later);
        assert_eq!(done[0].id, second);
        assert_eq!(
            done[0].outcome,
            EchoOutcome::Mismatch {
                expected: json!({"action": "send", "body": "b"}),
                actual: "\"b\"".into()
            }
        );
    }

    #[test]
    fn silence_is_a_timeout_and_old_frames_do_not_count() {
        let start = Instant::now();
        let mut tracker = EchoTracker::new();
        let sent = start + Duration::from_millis(10);
        tracker.expect(json!("x"), sent, TIMEOUT);
        // Read before the send: neither an echo nor a candidate.
        assert!(!tracker.on_frame(&text(start, "\"x\"")).consumed());
        // Control frames take no part.
        tracker.on_frame(&Incoming {
            at: sent,
            frame: Frame::Pong(vec![]),
        });
        assert_eq!(tracker.next_deadline(), Some(sent + TIMEOUT));
        let done = tracker.expire(sent + TIMEOUT * 2);
        assert_eq!(
            done[0].outcome,
            EchoOutcome::Timeout {
                expected: json!("x"),
                after: TIMEOUT
            }
        );
    }

    #[test]
    fn a_closed_connection_fails_every_check() {
        let start = Instant::now();
        let mut tracker = EchoTracker::new();
        tracker.expect(json!(1), start, TIMEOUT);
        tracker.expect(json!(2), start, TIMEOUT);
        let ending = Ending::Dropped {
            reason: "reset".into(),
        };
        let done = tracker.close(&ending);
        assert_eq!(done.len(), 2);
        assert!(done.iter().all(|r| !r.outcome.passed()));
        assert!(tracker.is_empty());
    }

    #[test]
    fn cancelled_checks_are_forgotten() {
        let mut tracker = EchoTracker::new();
        let id = tracker.expect(json!(1), Instant::now(), TIMEOUT);
        tracker.cancel(id);
        assert!(tracker.is_empty());
        assert_eq!(tracker.next_deadline(), None);
    }
}
