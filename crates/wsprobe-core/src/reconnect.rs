//! Reopening a connection the server ended: when ([`ReconnectPolicy`]), how long to wait
//! before each attempt ([`Backoff`]), and the loop that re-runs the whole handshake
//! ([`redial`]) and reports every attempt as data ([`ReconnectEvent`]) for a front-end to
//! show or count.
//!
//! Each attempt calls [`client::connect_observed`] again with the same URL and [`ClientConfig`]:
//! the same headers, the same credentials and AWS profile, and a fresh SigV4 signature
//! (the request is signed anew, with the current time, on every call).
//!
//! The backoff is exponential with jitter, and never zero: before attempt *n* of an
//! outage (counted from 1) the delay is drawn uniformly from `[c/2, c]`, where
//! `c = min(FIRST_DELAY · 2^(n-1), MAX_DELAY)`. So the first retry after a connection
//! that had been open comes within [`FIRST_DELAY`] (well within a second), the delay
//! grows only across consecutive failures (the ranges of successive attempts do not
//! overlap until the cap), and it starts over once a connection opens. Jitter spreads the
//! reconnects of many connections that the server closed at the same moment (an idle
//! timeout, a deployment).

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use url::Url;

use crate::client::{self, ClientConfig, ConnectError, Connection};
pub use crate::options::DEFAULT_RECONNECT_MAX;
use crate::session::{ABNORMAL, Ending};
use crate::transcript::{Event, SharedObserver};

/// The ceiling of the delay before the first attempt of an outage; the delay itself is
/// between half of it and all of it.
pub const FIRST_DELAY: Duration = Duration::from_millis(250);
/// The ceiling of every delay, however many attempts failed: a server that is down for a
/// while is tried about twice a minute.
pub const MAX_DELAY: Duration = Duration::from_secs(30);
/// The close code of a server going away (API Gateway's idle timeout and 2-hour limit).
pub const GOING_AWAY: u16 = 1001;

/// Which endings are reconnected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReconnectWhen {
    /// 1001 (going away) and 1006 (dropped without a close frame): `--reconnect`.
    GoingAway,
    /// Any close by the server, whatever its code: `--reconnect always`.
    Always,
}

/// When and how often to reconnect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReconnectPolicy {
    /// Which endings are reconnected.
    pub when: ReconnectWhen,
    /// How many consecutive attempts may fail before giving up (at least 1); the count
    /// starts over once a connection opens.
    pub max_attempts: u32,
}

impl Default for ReconnectPolicy {
    /// 1001 and 1006, at most [`DEFAULT_RECONNECT_MAX`] consecutive failures.
    fn default() -> Self {
        Self {
            when: ReconnectWhen::GoingAway,
            max_attempts: DEFAULT_RECONNECT_MAX,
        }
    }
}

impl ReconnectPolicy {
    /// Whether a connection that ended like this is reopened. Our own close is never
    /// reconnected: the front-ends do not ask then.
    pub fn applies_to(&self, ending: &Ending) -> bool {
        match self.when {
            ReconnectWhen::Always => true,
            ReconnectWhen::GoingAway => matches!(ending.code(), GOING_AWAY | ABNORMAL),
        }
    }
}

/// Exponential backoff with jitter (see the module doc for the bounds).
#[derive(Debug)]
pub struct Backoff {
    /// Attempts that failed since a connection last opened.
    failures: u32,
    rng: StdRng,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

impl Backoff {
    /// A backoff with a random seed.
    pub fn new() -> Self {
        Self::seeded(rand::random())
    }

    /// A backoff whose jitter is reproducible (for tests).
    pub fn seeded(seed: u64) -> Self {
        Self {
            failures: 0,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// The ceiling of the delay after `failures` consecutive failed attempts.
    pub fn ceiling(failures: u32) -> Duration {
        let factor = 1u32.checked_shl(failures.min(16)).unwrap_or(u32::MAX);
        FIRST_DELAY.saturating_mul(factor).min(MAX_DELAY)
    }

    /// The delay before the next attempt: in `[c/2, c]` for the current ceiling `c`,
    /// never zero.
    pub fn delay(&mut self) -> Duration {
        let ceiling = Self::ceiling(self.failures);
        let floor = ceiling / 2;
        let span = u64::try_from((ceiling - floor).as_micros()).unwrap_or(u64::MAX);
        floor + Duration::from_micros(self.rng.random_range(0..=span))
    }

    /// An attempt failed: the next delay is longer (up to the cap).
    pub fn failed(&mut self) {
        self.failures = self.failures.saturating_add(1);
    }

    /// A connection opened: the next outage starts from the first delay again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Attempts that failed since a connection last opened.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// What happened during a reconnect, in order, for a front-end to show or count.
#[derive(Clone, Debug)]
pub enum ReconnectEvent {
    /// Attempt `attempt` starts after `delay`.
    Waiting {
        /// 1 for the first attempt after the connection ended.
        attempt: u32,
        /// How the connection ended.
        cause: Ending,
        /// The backoff before the attempt.
        delay: Duration,
    },
    /// Attempt `attempt` failed; another follows unless this was the last.
    Failed {
        /// Its number.
        attempt: u32,
        /// Why (no secret in it).
        error: String,
    },
    /// Attempt `attempt` opened a connection.
    Reconnected {
        /// Its number.
        attempt: u32,
        /// From the start of reconnecting to the open new one (backoff included).
        took: Duration,
        /// The handshake alone.
        connect_time: Duration,
    },
}

/// Why reconnecting stopped without a connection.
#[derive(Debug, thiserror::Error)]
pub enum RedialError {
    /// The server refused the handshake with 401 or 403 (or the request cannot be made):
    /// trying again would not change the answer.
    #[error("{0}")]
    Refused(ConnectError),
    /// `max_attempts` consecutive attempts failed; the last error.
    #[error("gave up after {attempts} attempts: {last}")]
    GaveUp {
        /// How many were made.
        attempts: u32,
        /// Why the last one failed.
        last: ConnectError,
    },
}

impl RedialError {
    /// The connect error behind it (for the exit code and the hint).
    pub fn into_connect_error(self) -> ConnectError {
        match self {
            RedialError::Refused(error) | RedialError::GaveUp { last: error, .. } => error,
        }
    }

    /// The connect error behind it.
    pub fn connect_error(&self) -> &ConnectError {
        match self {
            RedialError::Refused(error) | RedialError::GaveUp { last: error, .. } => error,
        }
    }
}

/// Whether an attempt that failed like this is worth repeating: not a refused
/// authorization (401, 403) nor a request that cannot be made.
pub fn is_retryable(error: &ConnectError) -> bool {
    !matches!(
        error,
        ConnectError::Rejected {
            status: 401 | 403,
            ..
        } | ConnectError::InvalidUrl { .. }
    )
}

/// Reopens a connection to `url` with `config` after it ended with `cause` (which the
/// policy accepted): waits the backoff's delay, re-runs the whole handshake, and repeats
/// until a connection opens, the server refuses us (401/403), or `policy.max_attempts`
/// consecutive attempts failed. Every step is reported to `report` as it happens. On
/// success the backoff is reset; on failure it keeps its count, so a later call goes on
/// backing off. The connection's `observer` (its transcript) hears of each attempt
/// before its handshake, and sees the new connection as it saw the old one.
pub async fn redial(
    url: &Url,
    config: &ClientConfig,
    policy: &ReconnectPolicy,
    backoff: &mut Backoff,
    cause: &Ending,
    observer: Option<&SharedObserver>,
    report: &mut (dyn FnMut(ReconnectEvent) + Send),
) -> Result<Connection, RedialError> {
    let ended = Instant::now();
    let max = policy.max_attempts.max(1);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let delay = backoff.delay();
        report(ReconnectEvent::Waiting {
            attempt,
            cause: cause.clone(),
            delay,
        });
        tokio::time::sleep(delay).await;
        if let Some(observer) = observer {
            observer.observe(Event::Reconnect {
                attempt,
                after_code: Some(cause.code()),
                delay,
            });
        }
        match client::connect_observed(url, config, observer.cloned()).await {
            Ok(connection) => {
                backoff.reset();
                report(ReconnectEvent::Reconnected {
                    attempt,
                    took: ended.elapsed(),
                    connect_time: connection.connect_time,
                });
                return Ok(connection);
            }
            Err(error) => {
                backoff.failed();
                report(ReconnectEvent::Failed {
                    attempt,
                    error: error.to_string(),
                });
                if !is_retryable(&error) {
                    return Err(RedialError::Refused(error));
                }
                if attempt >= max {
                    return Err(RedialError::GaveUp {
                        attempts: attempt,
                        last: error,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_double_up_to_the_cap() {
        assert_eq!(Backoff::ceiling(0), FIRST_DELAY);
        assert_eq!(Backoff::ceiling(1), FIRST_DELAY * 2);
        assert_eq!(Backoff::ceiling(3), FIRST_DELAY * 8);
        assert_eq!(Backoff::ceiling(7), MAX_DELAY);
        assert_eq!(Backoff::ceiling(u32::MAX), MAX_DELAY);
    }

    #[test]
    fn delays_are_never_zero_and_grow_across_failures() {
        for seed in 0..200 {
            let mut backoff = Backoff::seeded(seed);
            let first = backoff.delay();
            assert!(
                first >= FIRST_DELAY / 2 && first <= FIRST_DELAY,
                "{first:?}"
            );
            assert!(first < Duration::from_secs(1));
            let mut previous = first;
            for failures in 1..12 {
                backoff.failed();
                let delay = backoff.delay();
                let ceiling = Backoff::ceiling(failures);
                assert!(delay >= ceiling / 2 && delay <= ceiling, "{delay:?}");
                if ceiling < MAX_DELAY {
                    assert!(delay >= previous, "seed {seed}: {delay:?} < {previous:?}");
                }
                previous = delay;
            }
            assert!(previous <= MAX_DELAY && previous >= MAX_DELAY / 2);
        }
    }

    #[test]
    fn an_open_connection_starts_the_backoff_over() {
        let mut backoff = Backoff::seeded(7);
        for _ in 0..5 {
            backoff.failed();
        }
        assert!(backoff.delay() >= FIRST_DELAY * 4);
        backoff.reset();
        assert_eq!(backoff.failures(), 0);
        assert!(backoff.delay() <= FIRST_DELAY);
    }

    #[test]
    fn the_same_seed_gives_the_same_jitter() {
        let mut a = Backoff::seeded(42);
        let mut b = Backoff::seeded(42);
        assert_eq!(a.delay(), b.delay());
    }

    #[test]
    fn which_endings_are_reconnected() {
        let closed = |code| Ending::Closed {
            code,
            reason: String::new(),
        };
        let dropped = Ending::Dropped {
            reason: "reset".into(),
        };
        let going_away = ReconnectPolicy::default();
        assert!(going_away.applies_to(&closed(1001)));
        assert!(going_away.applies_to(&dropped));
        assert!(!going_away.applies_to(&closed(1000)));
        assert!(!going_away.applies_to(&closed(1011)));
        assert!(!going_away.applies_to(&closed(4000)));
        let always = ReconnectPolicy {
            when: ReconnectWhen::Always,
            ..ReconnectPolicy::default()
        };
        assert!(always.applies_to(&closed(1000)));
        assert!(always.applies_to(&closed(4000)));
    }

    #[test]
    fn refusals_are_not_retried() {
        let rejected = |status| ConnectError::Rejected {
            status,
            reason: String::new(),
            body: String::new(),
            headers: Box::default(),
        };
        assert!(!is_retryable(&rejected(401)));
        assert!(!is_retryable(&rejected(403)));
        assert!(is_retryable(&rejected(429)));
        assert!(is_retryable(&rejected(502)));
        assert!(is_retryable(&ConnectError::Refused {
            addr: "127.0.0.1:1".into()
        }));
    }

    #[tokio::test]
    async fn a_server_that_is_gone_is_tried_max_attempts_times() {
        // A port nothing listens on: bind, note it, close.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let url = client::parse_url(&format!("ws://127.0.0.1:{port}/")).expect("url");
        let policy = ReconnectPolicy {
            when: ReconnectWhen::GoingAway,
            max_attempts: 3,
        };
        let mut backoff = Backoff::seeded(1);
        let mut events = Vec::new();
        let cause = Ending::Closed {
            code: 1001,
            reason: "Going away".into(),
        };
        let result = redial(
            &url,
            &ClientConfig::default(),
            &policy,
            &mut backoff,
            &cause,
            None,
            &mut |event| events.push(event),
        )
        .await;
        assert!(matches!(
            result,
            Err(RedialError::GaveUp { attempts: 3, .. })
        ));
        let delays: Vec<Duration> = events
            .iter()
            .filter_map(|event| match event {
                ReconnectEvent::Waiting { delay, .. } => Some(*delay),
                _ => None,
            })
            .collect();
        assert_eq!(delays.len(), 3, "{events:?}");
        assert!(delays.iter().all(|delay| !delay.is_zero()));
        assert!(
            delays[0] <= delays[1] && delays[1] <= delays[2],
            "{delays:?}"
        );
        assert_eq!(backoff.failures(), 3);
    }
}
