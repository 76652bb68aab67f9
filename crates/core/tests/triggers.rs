//! Trigger behaviour pinned end to end: JSON in, fire times out, across time zones and
//! daylight-saving edges. Pure: no clock is read, every "now" is given.

use chrono::{TimeDelta, TimeZone, Utc};
use chrono_tz::America::New_York;
use chrono_tz::Tz;
use proptest::prelude::*;
use schedulezero_core::Timestamp;
use schedulezero_core::time::format_in_zone;
use schedulezero_core::trigger::{ParseContext, Trigger};
use serde_json::{Value, json};

fn ctx(now: &str, zone: Tz) -> ParseContext {
    ParseContext { now: t(now), local_zone: zone }
}

fn t(s: &str) -> Timestamp {
    s.parse().expect("a valid UTC time")
}

fn parse(v: Value, ctx: &ParseContext) -> Trigger {
    Trigger::parse(&v, ctx).unwrap_or_else(|e| panic!("{v} should parse: {e}"))
}

/// Fire times between two instants, formatted in New York time.
fn fires_ny(trigger: &Trigger, from: &str, to: &str) -> Vec<String> {
    let end = t(to);
    let mut out = Vec::new();
    let mut at = t(from);
    while let Some(next) = trigger.next_after(at) {
        if next > end {
            break;
        }
        out.push(format_in_zone(next, New_York));
        at = next;
    }
    out
}

// The two cron front-ends must agree on every daylight-saving rule.
fn both_fronts(fields: Value, expression: &str) -> [Trigger; 2] {
    let c = ctx("2026-01-01T00:00:00Z", New_York);
    let mut f = fields.as_object().expect("object").clone();
    f.insert("type".into(), json!("cron"));
    f.insert("timezone".into(), json!("America/New_York"));
    [
        parse(Value::Object(f), &c),
        parse(json!({"type": "cron", "expression": expression, "timezone": "America/New_York"}), &c),
    ]
}

#[test]
fn spring_forward_daily_0230_runs_once_at_0300() {
    for trigger in both_fronts(json!({"hour": 2, "minute": 30}), "30 2 * * *") {
        let fires = fires_ny(&trigger, "2026-03-07T12:00:00Z", "2026-03-09T12:00:00Z");
        assert_eq!(
            fires,
            vec!["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"],
            "{}",
            trigger.describe()
        );
    }
}

#[test]
fn fall_back_hourly_job_runs_every_real_hour() {
    for trigger in both_fronts(json!({"minute": 0}), "0 * * * *") {
        // 2026-11-01 in New York lasts 25 hours: 00:00 EDT (04:00Z) to 00:00 EST next day (05:00Z).
        let fires = fires_ny(&trigger, "2026-11-01T03:59:59Z", "2026-11-02T04:59:59Z");
        assert_eq!(fires.len(), 25, "{}: {fires:?}", trigger.describe());
        assert_eq!(fires[1], "2026-11-01T01:00:00-04:00");
        assert_eq!(fires[2], "2026-11-01T01:00:00-05:00");
        assert_eq!(fires[3], "2026-11-01T02:00:00-05:00");
        let instants: Vec<Timestamp> = fires.iter().map(|f| f.parse().expect("rfc3339")).collect();
        for w in instants.windows(2) {
            assert_eq!(w[1] - w[0], TimeDelta::hours(1), "every real hour");
        }
    }
}

#[test]
fn fall_back_daily_0130_runs_once_on_the_first_pass() {
    for trigger in both_fronts(json!({"hour": 1, "minute": 30}), "30 1 * * *") {
        let fires = fires_ny(&trigger, "2026-10-31T12:00:00Z", "2026-11-02T12:00:00Z");
        assert_eq!(
            fires,
            vec!["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"],
            "{}",
            trigger.describe()
        );
    }
}

#[test]
fn fall_back_minutely_job_runs_every_real_minute_even_from_inside_the_fold() {
    for trigger in both_fronts(json!({"second": 0}), "* * * * *") {
        // From 01:59:30 EDT (first pass) the next minute is 01:00 EST (second pass).
        let next = trigger.next_after(t("2026-11-01T05:59:30Z")).expect("fires");
        assert_eq!(format_in_zone(next, New_York), "2026-11-01T01:00:00-05:00", "{}", trigger.describe());
        // Inside the second pass it goes on minute by minute.
        let next = trigger.next_after(t("2026-11-01T06:10:00Z")).expect("fires");
        assert_eq!(format_in_zone(next, New_York), "2026-11-01T01:11:00-05:00");
    }
}

#[test]
fn spring_forward_gap_fires_once_for_several_slots_inside_it() {
    for trigger in both_fronts(json!({"minute": "*/15"}), "*/15 * * * *") {
        let fires = fires_ny(&trigger, "2026-03-08T06:40:00Z", "2026-03-08T07:20:00Z");
        assert_eq!(
            fires,
            vec!["2026-03-08T01:45:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-08T03:15:00-04:00"],
            "{}",
            trigger.describe()
        );
    }
}

#[test]
fn interval_fires_immediately_then_every_period() {
    let c = ctx("2026-05-01T10:00:00.250Z", chrono_tz::UTC);
    let trigger = parse(json!({"type": "interval", "seconds": 5}), &c);
    assert_eq!(trigger.first_fire(c.now), Some(c.now));
    assert_eq!(trigger.next_after(c.now), Some(c.now + TimeDelta::seconds(5)));
    assert_eq!(
        trigger.upcoming(c.now, 3),
        vec![c.now + TimeDelta::seconds(5), c.now + TimeDelta::seconds(10), c.now + TimeDelta::seconds(15)]
    );
}

#[test]
fn interval_left_to_start_now_still_fires_at_its_start_when_stored_moments_later() {
    // The trigger is parsed at `c.now`; the schedule is stored a few milliseconds (or, on a busy
    // machine, several hundred) later. Its first fire is still the start, not a period later.
    let c = ctx("2026-05-01T10:00:00.250Z", chrono_tz::UTC);
    let trigger = parse(json!({"type": "interval", "minutes": 10}), &c);
    for later_ms in [1, 2, 40, 999, 1000] {
        assert_eq!(
            trigger.first_fire(c.now + TimeDelta::milliseconds(later_ms)),
            Some(c.now),
            "{later_ms} ms"
        );
    }
    // A start well in the past is a schedule already running: its next slot, not a catch-up.
    assert_eq!(
        trigger.first_fire(c.now + TimeDelta::milliseconds(1001)),
        Some(c.now + TimeDelta::minutes(10))
    );
}

#[test]
fn interval_units_add_up_and_accept_numeric_strings() {
    let c = ctx("2026-05-01T00:00:00Z", chrono_tz::UTC);
    let trigger = parse(
        json!({"type": "INTERVAL", "weeks": 1, "days": "1", "hours": 1.5, "minutes": 1, "seconds": "0.5"}),
        &c,
    );
    let period =
        TimeDelta::weeks(1) + TimeDelta::days(1) + TimeDelta::minutes(91) + TimeDelta::milliseconds(500);
    assert_eq!(trigger.next_after(c.now), Some(c.now + period));
}

#[test]
fn interval_start_and_end_bound_the_fires() {
    let c = ctx("2026-05-01T00:00:00Z", New_York);
    let trigger = parse(
        json!({"type": "interval", "hours": 1, "start_time": "2026-05-01T08:00:00", "end_time": "2026-05-01T10:00:00"}),
        &c,
    );
    let fires: Vec<String> =
        trigger.upcoming(c.now, 10).into_iter().map(|f| format_in_zone(f, New_York)).collect();
    assert_eq!(
        fires,
        vec!["2026-05-01T08:00:00-04:00", "2026-05-01T09:00:00-04:00", "2026-05-01T10:00:00-04:00"]
    );
}

#[test]
fn interval_in_the_past_starts_at_the_next_slot() {
    let c = ctx("2026-05-01T00:00:10Z", chrono_tz::UTC);
    let trigger = parse(json!({"type": "interval", "seconds": 4, "start_time": "2026-05-01T00:00:00Z"}), &c);
    assert_eq!(trigger.first_fire(c.now), Some(t("2026-05-01T00:00:12Z")));
}

#[test]
fn date_reads_iso_naive_local_and_unix_seconds() {
    let c = ctx("2026-05-01T00:00:00Z", New_York);
    let naive = parse(json!({"type": "date", "run_date": "2026-07-04T09:00:00"}), &c);
    assert_eq!(naive.first_fire(c.now), Some(t("2026-07-04T13:00:00Z")));
    let unix = parse(json!({"type": "date", "run_date": 1_800_000_000}), &c);
    assert_eq!(unix.first_fire(c.now), Some(Utc.timestamp_opt(1_800_000_000, 0).unwrap()));
    let zoned = parse(json!({"type": "date", "run_date": "2026-07-04 09:00", "timezone": "Asia/Tokyo"}), &c);
    assert_eq!(zoned.first_fire(c.now), Some(t("2026-07-04T00:00:00Z")));
}

#[test]
fn date_in_the_past_fires_at_once_and_only_once() {
    let c = ctx("2026-05-01T00:00:00Z", chrono_tz::UTC);
    let trigger = parse(json!({"type": "date", "run_date": "2020-01-01T00:00:00Z"}), &c);
    assert_eq!(trigger.first_fire(c.now), Some(t("2020-01-01T00:00:00Z")));
    assert_eq!(trigger.next_after(t("2020-01-01T00:00:00Z")), None);
}

#[test]
fn crontab_strings_of_five_six_and_seven_fields_and_nicknames() {
    let c = ctx("2026-01-01T00:00:00Z", chrono_tz::UTC);
    let cases = [
        ("*/5 * * * *", "2026-01-01T00:05:00+00:00"),
        ("*/5 * * * * *", "2026-01-01T00:00:05+00:00"),
        ("0 0 12 * * * 2027", "2027-01-01T12:00:00+00:00"),
        ("@daily", "2026-01-02T00:00:00+00:00"),
        ("@hourly", "2026-01-01T01:00:00+00:00"),
        ("0 9 * * 0", "2026-01-04T09:00:00+00:00"), // Sunday = 0
        ("0 9 L * *", "2026-01-31T09:00:00+00:00"),
        ("0 9 15W * *", "2026-01-15T09:00:00+00:00"),
        ("0 9 * * 5#2", "2026-01-09T09:00:00+00:00"),
    ];
    for (expr, want) in cases {
        let trigger = parse(json!({"type": "cron", "expression": expr}), &c);
        let got = trigger.next_after(c.now).map(|f| format_in_zone(f, chrono_tz::UTC));
        assert_eq!(got.as_deref(), Some(want), "{expr}");
    }
}

#[test]
fn cron_respects_start_and_end_time() {
    let c = ctx("2026-01-01T00:00:00Z", chrono_tz::UTC);
    let trigger = parse(
        json!({"type": "cron", "expression": "0 * * * *", "start_time": "2026-01-01T05:30:00Z", "end_time": "2026-01-01T07:00:00Z"}),
        &c,
    );
    let fires: Vec<Timestamp> = trigger.upcoming(c.now, 10);
    assert_eq!(fires, vec![t("2026-01-01T06:00:00Z"), t("2026-01-01T07:00:00Z")]);
}

#[test]
fn errors_name_the_key_and_the_problem() {
    let c = ctx("2026-01-01T00:00:00Z", chrono_tz::UTC);
    let cases = [
        (json!({"type": "weekly"}), "trigger key 'type': 'weekly' is not a trigger type"),
        (json!({"seconds": 5}), "trigger key 'type': is missing"),
        (json!({"type": "interval"}), "trigger key 'seconds': the interval must be longer than zero"),
        (json!({"type": "interval", "seconds": -5}), "trigger key 'seconds': -5 is negative"),
        (json!({"type": "interval", "seconds": "five"}), "trigger key 'seconds': \"five\" is not a number"),
        (
            json!({"type": "interval", "seconds": 5, "hour": 3}),
            "trigger key 'hour': is not a key of an interval trigger",
        ),
        (json!({"type": "date"}), "trigger key 'run_date': is missing"),
        (
            json!({"type": "date", "run_date": "tomorrow"}),
            "trigger key 'run_date': 'tomorrow' is not an ISO-8601 time",
        ),
        (
            json!({"type": "cron", "hour": 1, "timezone": "Moon/Base"}),
            "trigger key 'timezone': 'Moon/Base' is not an IANA time zone",
        ),
        (json!({"type": "cron", "expression": "* * *"}), "cron expression: has 3 fields"),
        (json!({"type": "cron", "expression": "61 * * * *"}), "cron expression: '61 * * * *'"),
        (
            json!({"type": "cron", "expression": "* * * * *", "hour": 1}),
            "trigger key 'hour': cannot be combined with 'expression'",
        ),
        (
            json!({"type": "interval", "seconds": 1, "start_time": "2026-01-02T00:00:00Z", "end_time": "2026-01-01T00:00:00Z"}),
            "trigger key 'end_time': is before start_time",
        ),
        (
            json!({"type": "interval", "seconds": 1, "jitter": -1}),
            "trigger key 'jitter': must not be negative",
        ),
        (json!("*/5 * * * *"), "trigger key 'trigger': must be a JSON object"),
    ];
    for (input, want) in cases {
        let err = Trigger::parse(&input, &c).expect_err(&format!("{input} must be refused"));
        assert!(err.to_string().starts_with(want), "{input}: got '{err}', want '{want}…'");
    }
}

#[test]
fn canonical_json_parses_back_to_the_same_trigger_anywhere() {
    let c = ctx("2026-03-01T12:00:00Z", New_York);
    let elsewhere = ctx("2030-01-01T00:00:00Z", chrono_tz::Asia::Kolkata);
    for input in [
        json!({"type": "interval", "minutes": 2, "jitter": 1.5}),
        json!({"type": "date", "run_date": "2026-07-04T09:00:00"}),
        json!({"type": "cron", "expression": "0 9 * * 1-5", "end_time": "2027-01-01"}),
        json!({"type": "cron", "expression": "0 9 * * 1-5", "timezone": "Europe/Paris"}),
    ] {
        let trigger = parse(input.clone(), &c);
        let again = parse(trigger.to_json(), &elsewhere);
        assert_eq!(again, trigger, "{input} → {}", trigger.to_json());
    }
}

#[test]
fn jitter_is_bounded_and_stable_per_slot() {
    let c = ctx("2026-01-01T00:00:00Z", chrono_tz::UTC);
    let trigger = parse(json!({"type": "interval", "seconds": 10, "jitter": 2}), &c);
    let id = uuid::Uuid::now_v7();
    let mut distinct = std::collections::HashSet::new();
    for k in 0..200 {
        let slot = c.now + TimeDelta::seconds(10 * k);
        let j = trigger.jitter_for(id, slot);
        assert!(j >= TimeDelta::zero() && j <= TimeDelta::seconds(2), "{j}");
        assert_eq!(j, trigger.jitter_for(id, slot), "same slot, same jitter");
        distinct.insert(j);
    }
    assert!(distinct.len() > 50, "jitter should vary between slots");
    let none = parse(json!({"type": "interval", "seconds": 10}), &c);
    assert_eq!(none.jitter_for(id, c.now), TimeDelta::zero());
}

#[test]
fn describe_reads_like_the_original() {
    let c = ctx("2026-01-01T00:00:00Z", chrono_tz::UTC);
    assert_eq!(parse(json!({"type": "interval", "seconds": 5}), &c).describe(), "interval[0:00:05]");
    assert_eq!(
        parse(json!({"type": "interval", "days": 2, "hours": 1}), &c).describe(),
        "interval[2 days, 1:00:00]"
    );
    assert_eq!(
        parse(json!({"type": "cron", "expression": "*/5 * * * *"}), &c).describe(),
        "cron['*/5 * * * *', timezone='UTC']"
    );
}

const ZONES: [&str; 6] =
    ["America/New_York", "Europe/London", "Australia/Lord_Howe", "Asia/Kolkata", "America/Santiago", "UTC"];

fn arb_trigger() -> impl Strategy<Value = Value> {
    prop_oneof![
        (1u32..100_000, 0usize..ZONES.len()).prop_map(|(secs, z)| json!({
            "type": "interval", "seconds": secs, "start_time": "2026-01-01T00:00:00", "timezone": ZONES[z]
        })),
        (
            prop::sample::select(vec![
                "* * * * *",
                "*/7 * * * * *",
                "30 2 * * *",
                "0 1 * * *",
                "15 */3 * * *",
                "0 0 L * *",
                "0 9 * * 1-5",
                "30 1,2,3 * * *",
                "0 0 29 2 *",
            ]),
            0usize..ZONES.len()
        )
            .prop_map(|(e, z)| json!({"type": "cron", "expression": e, "timezone": ZONES[z]})),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn next_fire_is_after_the_reference_and_strictly_increases(
        input in arb_trigger(),
        start in 1_767_225_600i64..1_830_297_600, // 2026 to 2028
    ) {
        let c = ParseContext { now: t("2026-01-01T00:00:00Z"), local_zone: chrono_tz::UTC };
        let trigger = Trigger::parse(&input, &c).expect("valid");
        let mut at = Utc.timestamp_opt(start, 0).unwrap();
        for _ in 0..20 {
            let Some(next) = trigger.next_after(at) else { break };
            prop_assert!(next > at, "{} after {} gave {}", trigger.describe(), at, next);
            at = next;
        }
    }

    #[test]
    fn interval_fires_are_one_period_apart_in_real_time_across_dst(
        secs in 60u32..200_000,
        z in 0usize..ZONES.len(),
        start in 1_767_225_600i64..1_830_297_600,
    ) {
        let c = ParseContext { now: t("2026-01-01T00:00:00Z"), local_zone: chrono_tz::UTC };
        let trigger = Trigger::parse(
            &json!({"type": "interval", "seconds": secs, "start_time": "2026-01-01T00:00:00", "timezone": ZONES[z]}),
            &c,
        ).expect("valid");
        let fires = trigger.upcoming(Utc.timestamp_opt(start, 0).unwrap(), 400);
        for w in fires.windows(2) {
            prop_assert_eq!(w[1] - w[0], TimeDelta::seconds(i64::from(secs)));
        }
    }
}
