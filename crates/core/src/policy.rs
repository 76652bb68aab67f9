//! Policies: plain data with their defaults documented where they are declared.
//!
//! JSON form (every key optional; durations in seconds):
//! ```json
//! {"misfire": {"policy": "coalesce"},
//!  "overlap": "allow",
//!  "retry": {"max_attempts": 3, "initial_backoff": 1, "max_backoff": 60, "multiplier": 2, "jitter": 0.2},
//!  "timeout": 300}
//! ```

use chrono::TimeDelta;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::PolicyError;

/// What to do with fire slots that passed while nobody could fire them (server down, overload).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "policy", rename_all = "snake_case", deny_unknown_fields)]
pub enum MisfirePolicy {
    /// Run once, for the latest missed slot; earlier ones are recorded `missed`. The default, and
    /// the original's behaviour.
    #[default]
    Coalesce,
    /// Run every missed slot, oldest first, but at most the `max` latest (default 100); earlier
    /// ones are recorded `missed`.
    RunAll {
        #[serde(default = "default_run_all_max")]
        max: u32,
    },
    /// Run only slots at most `grace` seconds old at the time they are claimed; older ones are
    /// recorded `missed`.
    Skip {
        #[serde(with = "secs")]
        grace: TimeDelta,
    },
}

fn default_run_all_max() -> u32 {
    100
}

/// What to do when a slot fires while a run of the same schedule is still active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OverlapPolicy {
    /// Start the new run anyway (the default): handler capacity bounds the concurrency.
    #[default]
    Allow,
    /// Record the new slot as `skipped`.
    Skip,
    /// Keep one new run waiting until the active one finishes; further slots are `skipped`.
    QueueOne,
    /// Cancel the active run and start the new one.
    Replace,
}

/// How failed attempts are retried: exponential backoff with jitter and a cap.
///
/// Failures, time-outs, lost handlers and server crashes (`interrupted`) count as failed
/// attempts; a cancelled run is never retried.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (default 3, as the original; 1 = never retry).
    pub max_attempts: u32,
    /// Delay before the second attempt (default 1 s).
    #[serde(with = "secs")]
    pub initial_backoff: TimeDelta,
    /// The longest delay between attempts (default 60 s).
    #[serde(with = "secs")]
    pub max_backoff: TimeDelta,
    /// Each delay is the previous one times this (default 2).
    pub multiplier: f64,
    /// Each delay is shortened by a random fraction up to this (default 0.2), so retries of
    /// runs that failed together spread out.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_backoff: TimeDelta::seconds(1),
            max_backoff: TimeDelta::seconds(60),
            multiplier: 2.0,
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// Whether a run whose attempt number `attempt` failed gets another attempt.
    pub fn allows_another(&self, attempt: u32) -> bool {
        attempt < self.max_attempts
    }

    /// The delay before the attempt after failed attempt `attempt` (1-based); `random` is any
    /// uniformly random number (the caller's source, so this stays pure).
    pub fn backoff(&self, attempt: u32, random: u64) -> TimeDelta {
        let exp = self.multiplier.powi(attempt.saturating_sub(1).min(64) as i32);
        let base_ms = self.initial_backoff.num_milliseconds() as f64 * exp;
        let capped = base_ms.min(self.max_backoff.num_milliseconds() as f64);
        let fraction = (random % 1_000_001) as f64 / 1_000_000.0;
        let ms = capped * (1.0 - self.jitter * fraction);
        TimeDelta::milliseconds(ms.max(0.0) as i64)
    }
}

/// Every policy of a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policies {
    pub misfire: MisfirePolicy,
    pub overlap: OverlapPolicy,
    pub retry: RetryPolicy,
    /// How long one attempt may run before it is abandoned as `timed_out` (default 300 s).
    #[serde(with = "secs")]
    pub timeout: TimeDelta,
}

impl Default for Policies {
    fn default() -> Self {
        Self {
            misfire: MisfirePolicy::default(),
            overlap: OverlapPolicy::default(),
            retry: RetryPolicy::default(),
            timeout: TimeDelta::seconds(300),
        }
    }
}

impl Policies {
    /// Parses and validates the JSON form; absent keys take their defaults.
    pub fn parse(value: &Value) -> Result<Policies, PolicyError> {
        if value.is_null() {
            return Ok(Policies::default());
        }
        if !value.is_object() {
            return Err(PolicyError::new("policies", "must be a JSON object"));
        }
        let p: Policies = serde_path_to_error::deserialize(value.clone()).map_err(|e| {
            // The path names the key (`retry.max_attempts`); an unknown key is named by serde.
            let path = e.path().to_string();
            let msg = e.into_inner().to_string();
            let field = match path.as_str() {
                "." => msg.split('`').nth(1).unwrap_or("policies").to_string(),
                _ => path,
            };
            PolicyError::new(field, msg)
        })?;
        p.validate()?;
        Ok(p)
    }

    pub fn validate(&self) -> Result<(), PolicyError> {
        let r = &self.retry;
        if r.max_attempts == 0 {
            return Err(PolicyError::new("retry.max_attempts", "must be at least 1 (1 = no retry)"));
        }
        if r.initial_backoff < TimeDelta::zero() || r.max_backoff < TimeDelta::zero() {
            return Err(PolicyError::new("retry.initial_backoff", "backoffs must not be negative"));
        }
        if r.max_backoff < r.initial_backoff {
            return Err(PolicyError::new("retry.max_backoff", "must not be shorter than initial_backoff"));
        }
        if !(r.multiplier.is_finite() && r.multiplier >= 1.0) {
            return Err(PolicyError::new("retry.multiplier", "must be a number of at least 1"));
        }
        if !(0.0..=1.0).contains(&r.jitter) {
            return Err(PolicyError::new("retry.jitter", "must be a fraction between 0 and 1"));
        }
        if self.timeout <= TimeDelta::zero() {
            return Err(PolicyError::new("timeout", "must be longer than zero seconds"));
        }
        match self.misfire {
            MisfirePolicy::RunAll { max: 0 } => {
                Err(PolicyError::new("misfire.max", "must be at least 1 (or use 'skip')"))
            }
            MisfirePolicy::Skip { grace } if grace < TimeDelta::zero() => {
                Err(PolicyError::new("misfire.grace", "must not be negative"))
            }
            _ => Ok(()),
        }
    }

    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// Durations as (fractional) seconds in JSON.
mod secs {
    use chrono::TimeDelta;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(d: &TimeDelta, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.num_milliseconds() as f64 / 1000.0)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<TimeDelta, D::Error> {
        let secs = f64::deserialize(d)?;
        if !secs.is_finite() || secs.abs() > 1e12 {
            return Err(D::Error::custom(format!("{secs} is not a duration in seconds")));
        }
        Ok(TimeDelta::milliseconds((secs * 1000.0).round() as i64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_are_documented_values() {
        let p = Policies::parse(&json!({})).expect("defaults");
        assert_eq!(p.misfire, MisfirePolicy::Coalesce);
        assert_eq!(p.overlap, OverlapPolicy::Allow);
        assert_eq!(p.retry.max_attempts, 3);
        assert_eq!(p.timeout, TimeDelta::seconds(300));
        assert_eq!(Policies::parse(&Value::Null).expect("null"), Policies::default());
    }

    #[test]
    fn every_policy_kind_parses() {
        let p = Policies::parse(&json!({
            "misfire": {"policy": "skip", "grace": 2.5},
            "overlap": "queue_one",
            "retry": {"max_attempts": 5, "initial_backoff": 0.5},
            "timeout": 10
        }))
        .expect("parses");
        assert_eq!(p.misfire, MisfirePolicy::Skip { grace: TimeDelta::milliseconds(2500) });
        assert_eq!(p.overlap, OverlapPolicy::QueueOne);
        assert_eq!(p.retry.max_attempts, 5);
        assert_eq!(p.retry.initial_backoff, TimeDelta::milliseconds(500));
        assert_eq!(p.retry.max_backoff, TimeDelta::seconds(60));
        let p = Policies::parse(&json!({"misfire": {"policy": "run_all"}})).expect("parses");
        assert_eq!(p.misfire, MisfirePolicy::RunAll { max: 100 });
        assert_eq!(Policies::parse(&p.to_json()).expect("round trip"), p);
    }

    #[test]
    fn bad_policies_name_the_field() {
        let e = Policies::parse(&json!({"overlap": "sometimes"})).expect_err("refused");
        assert!(e.to_string().contains("sometimes"), "{e}");
        assert_eq!(e.field, "overlap", "{e}");
        let e = Policies::parse(&json!({"retry": {"max_attempts": 0}})).expect_err("refused");
        assert_eq!(e.field, "retry.max_attempts");
        let e = Policies::parse(&json!({"retry": {"tries": 2}})).expect_err("refused");
        assert_eq!(e.field, "retry.tries", "{e}");
        let e = Policies::parse(&json!({"timeout": -1})).expect_err("refused");
        assert_eq!(e.field, "timeout");
        let e = Policies::parse(&json!({"misfire": {"policy": "skip"}})).expect_err("refused");
        assert!(e.to_string().contains("grace"), "{e}");
        assert!(Policies::parse(&json!([1])).is_err());
    }

    #[test]
    fn backoff_grows_exponentially_up_to_the_cap_and_jitter_only_shortens() {
        let r = RetryPolicy { jitter: 0.0, ..RetryPolicy::default() };
        assert_eq!(r.backoff(1, 0), TimeDelta::seconds(1));
        assert_eq!(r.backoff(2, 0), TimeDelta::seconds(2));
        assert_eq!(r.backoff(3, 0), TimeDelta::seconds(4));
        assert_eq!(r.backoff(30, 0), TimeDelta::seconds(60));
        let r = RetryPolicy::default();
        for random in [0, 1, 500_000, 1_000_000, u64::MAX] {
            let d = r.backoff(2, random);
            assert!(d <= TimeDelta::seconds(2) && d >= TimeDelta::milliseconds(1600), "{d}");
        }
        assert!(r.allows_another(2) && !r.allows_another(3));
    }
}
