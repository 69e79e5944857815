//! Background echo ticks: after a route-tagged send, the echo expected under the current
//! policy is watched for while the user goes on typing, and reported as `✓ echo 0.8 ms`,
//! `✗ echo mismatch` or `✗ no echo within 5s`.
//!
//! Ticks only *observe* the frames the prompt displays: they consume nothing, so an
//! `/expect echo` afterwards still finds the echo in the session's inbox. Whether a frame
//! is the echo is decided by the one echo verdict, [`wsprobe_core::message::echo_matches`], which
//! `expect echo` uses too: a tick and an `/expect` cannot disagree about a frame.
//!
//! How frames and ticks are correlated:
//!
//! - Pending ticks form a FIFO, oldest first; each has its own deadline (`--echo-timeout`
//!   after its send). Only frames read after the tick's send and no later than its
//!   deadline count for it.
//! - Each text frame that arrives is the echo of the *oldest* pending tick it matches; one
//!   frame settles at most one tick, so two identical sends need two echoes.
//! - A data frame that settles no tick is *unrelated* (a push, a broadcast): it becomes the
//!   *candidate* (the "actual" of a mismatch) of the oldest pending tick that has none yet.
//! - At its deadline, a tick that saw no echo fails: a mismatch with its candidate, or a
//!   timeout when nothing arrived. If the connection ends first, it fails at once.
//!
//! The echo of a send can be read before the front-end learns that the send completed, so
//! the last few data frames are kept and looked at when a tick starts.
//!
//! Pure logic on instants: tested without sockets.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde_json::Value;

use wsprobe_core::message::echo_matches;
use wsprobe_core::session::{Ending, Frame, Incoming};

/// How many recent data frames are kept for ticks that start after their echo arrived.
const RECENT: usize = 64;

/// One awaited echo.
#[derive(Clone, Debug)]
struct Tick {
    expected: Value,
    sent_at: Instant,
    deadline: Instant,
    timeout: Duration,
    /// The first unrelated data frame handed to this tick: "actual" of a mismatch.
    candidate: Option<String>,
}

impl Tick {
    fn in_window(&self, at: Instant) -> bool {
        at >= self.sent_at && at <= self.deadline
    }
}

/// How a tick ended.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum EchoOutcome {
    /// The echo arrived this long after the send.
    Matched {
        /// From the send to the arrival of the echo.
        latency: Duration,
    },
    /// Other messages arrived, none of them the echo; `actual` is the first of them.
    Mismatch {
        /// The echo that was expected.
        expected: Value,
        /// The first unrelated message that arrived after the send.
        actual: String,
    },
    /// Nothing arrived within the timeout.
    Timeout {
        /// The echo that was expected.
        expected: Value,
        /// The tick's timeout.
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

/// A data frame seen recently, and whether it already settled a tick.
#[derive(Debug)]
struct Seen {
    at: Instant,
    frame: Frame,
    claimed: bool,
}

/// The pending echo ticks of the prompt's connection.
#[derive(Debug, Default)]
pub(crate) struct EchoTicks {
    pending: VecDeque<Tick>,
    recent: VecDeque<Seen>,
}

impl EchoTicks {
    /// No ticks.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Starts a tick for a message sent at `sent_at` whose echo should be `expected`,
    /// failing after `timeout`. Frames already seen since `sent_at` count: the tick may
    /// pass at once (the returned outcome).
    pub(crate) fn expect(
        &mut self,
        expected: Value,
        sent_at: Instant,
        timeout: Duration,
    ) -> Option<EchoOutcome> {
        let mut tick = Tick {
            expected,
            sent_at,
            deadline: sent_at + timeout,
            timeout,
            candidate: None,
        };
        for seen in self.recent.iter_mut() {
            if seen.claimed || !tick.in_window(seen.at) {
                continue;
            }
            if is_echo(&tick.expected, &seen.frame) {
                seen.claimed = true;
                return Some(EchoOutcome::Matched {
                    latency: seen.at.saturating_duration_since(sent_at),
                });
            }
            if tick.candidate.is_none() {
                tick.candidate = Some(seen.frame.to_string());
            }
        }
        self.pending.push_back(tick);
        None
    }

    /// Whether no tick is waiting.
    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The earliest deadline of a waiting tick.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.pending.iter().map(|tick| tick.deadline).min()
    }

    /// Looks at a frame that arrived (see the module doc); returns the tick it settled.
    pub(crate) fn observe(&mut self, incoming: &Incoming) -> Option<EchoOutcome> {
        if !incoming.frame.is_data() {
            return None;
        }
        let at = incoming.at;
        let position = self
            .pending
            .iter()
            .position(|tick| tick.in_window(at) && is_echo(&tick.expected, &incoming.frame));
        let settled = position
            .and_then(|index| self.pending.remove(index))
            .map(|tick| EchoOutcome::Matched {
                latency: at.saturating_duration_since(tick.sent_at),
            });
        if settled.is_none()
            && let Some(tick) = self
                .pending
                .iter_mut()
                .find(|tick| tick.candidate.is_none() && tick.in_window(at))
        {
            tick.candidate = Some(incoming.frame.to_string());
        }
        self.recent.push_back(Seen {
            at,
            frame: incoming.frame.clone(),
            claimed: settled.is_some(),
        });
        if self.recent.len() > RECENT {
            self.recent.pop_front();
        }
        settled
    }

    /// Fails every tick whose deadline has come (at or before `now`), oldest first.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<EchoOutcome> {
        let mut done = Vec::new();
        self.pending.retain(|tick| {
            if tick.deadline > now {
                return true;
            }
            done.push(match &tick.candidate {
                Some(actual) => EchoOutcome::Mismatch {
                    expected: tick.expected.clone(),
                    actual: actual.clone(),
                },
                None => EchoOutcome::Timeout {
                    expected: tick.expected.clone(),
                    after: tick.timeout,
                },
            });
            false
        });
        done
    }

    /// Fails every waiting tick: the connection ended.
    pub(crate) fn close(&mut self, ending: &Ending) -> Vec<EchoOutcome> {
        self.pending
            .drain(..)
            .map(|tick| EchoOutcome::Closed {
                expected: tick.expected,
                ending: ending.clone(),
            })
            .collect()
    }
}

/// The one echo verdict, on a frame: only a text frame can be an echo.
fn is_echo(expected: &Value, frame: &Frame) -> bool {
    frame
        .as_text()
        .is_some_and(|text| echo_matches(expected, text))
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
    fn an_echo_passes_with_its_latency_quoted_or_raw() {
        let start = Instant::now();
        let mut ticks = EchoTicks::new();
        assert_eq!(ticks.expect(json!("Hello"), start, TIMEOUT), None);
        let ms3 = start + Duration::from_millis(3);
        assert_eq!(
            ticks.observe(&text(ms3, "Hello")),
            Some(EchoOutcome::Matched {
                latency: Duration::from_millis(3)
            })
        );
        assert!(ticks.is_empty());
    }

    #[test]
    fn an_echo_seen_before_the_tick_started_counts_once() {
        let start = Instant::now();
        let mut ticks = EchoTicks::new();
        ticks.observe(&text(start + Duration::from_millis(1), "\"x\""));
        assert!(
            ticks
                .expect(json!("x"), start, TIMEOUT)
                .is_some_and(|o| matches!(o, EchoOutcome::Matched { .. }))
        );
        // The same frame cannot be the echo of a second send.
        assert_eq!(ticks.expect(json!("x"), start, TIMEOUT), None);
        // A frame read before the send does not count.
        let later = start + Duration::from_secs(1);
        let mut fresh = EchoTicks::new();
        fresh.observe(&text(start, "\"y\""));
        assert_eq!(fresh.expect(json!("y"), later, TIMEOUT), None);
    }

    #[test]
    fn unrelated_frames_become_the_actual_of_a_mismatch() {
        let start = Instant::now();
        let mut ticks = EchoTicks::new();
        ticks.expect(json!({"action": "send", "body": "x"}), start, TIMEOUT);
        assert_eq!(ticks.observe(&text(start, "\"x\"")), None);
        assert!(ticks.expire(start + TIMEOUT / 2).is_empty());
        assert_eq!(ticks.next_deadline(), Some(start + TIMEOUT));
        assert_eq!(
            ticks.expire(start + TIMEOUT),
            vec![EchoOutcome::Mismatch {
                expected: json!({"action": "send", "body": "x"}),
                actual: "\"x\"".into()
            }]
        );
    }

    #[test]
    fn silence_is_a_timeout_and_a_close_fails_at_once() {
        let start = Instant::now();
        let mut ticks = EchoTicks::new();
        ticks.expect(json!(1), start, TIMEOUT);
        // Control frames take no part.
        ticks.observe(&Incoming {
            at: start,
            frame: Frame::Pong(vec![]),
        });
        assert_eq!(
            ticks.expire(start + TIMEOUT * 2),
            vec![EchoOutcome::Timeout {
                expected: json!(1),
                after: TIMEOUT
            }]
        );
        ticks.expect(json!(2), start, TIMEOUT);
        let ending = Ending::Dropped {
            reason: "reset".into(),
        };
        assert!(
            ticks
                .close(&ending)
                .iter()
                .all(|o| matches!(o, EchoOutcome::Closed { .. }))
        );
        assert!(ticks.is_empty());
    }
}
