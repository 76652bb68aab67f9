//! `schedulezero trigger next`, run as a user would: the real binary, its output and exit code.

use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_schedulezero"))
        .args(args)
        .env("TZ", "UTC")
        .output()
        .expect("binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn prints_rfc3339_times_with_offsets_across_spring_forward() {
    let o = run(&[
        "trigger",
        "next",
        r#"{"type":"cron","hour":"2","minute":"30"}"#,
        "--tz",
        "America/New_York",
        "--after",
        "2026-03-07T03:00:00",
        "-n",
        "3",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "2026-03-08T03:00:00-04:00\n2026-03-09T02:30:00-04:00\n2026-03-10T02:30:00-04:00\n"
    );
}

#[test]
fn accepts_a_bare_crontab_string_and_prints_json() {
    let o = run(&[
        "trigger",
        "next",
        "0 9 * * 1-5",
        "--tz",
        "Europe/Paris",
        "--after",
        "2026-07-03T10:00:00",
        "-n",
        "2",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON output");
    assert_eq!(doc["next"], serde_json::json!(["2026-07-06T09:00:00+02:00", "2026-07-07T09:00:00+02:00"]));
    assert_eq!(doc["timezone"], "Europe/Paris");
    assert_eq!(doc["trigger"]["expression"], "0 9 * * 1-5");
}

#[test]
fn an_exhausted_trigger_says_so() {
    let o = run(&[
        "trigger",
        "next",
        r#"{"type":"date","run_date":"2020-01-01T00:00:00Z"}"#,
        "--after",
        "2021-01-01T00:00:00Z",
    ]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("no more fire times"), "{}", stdout(&o));
}

#[test]
fn bad_input_exits_non_zero_with_a_message_naming_the_problem() {
    let cases: [(&[&str], &str); 6] = [
        (
            &["trigger", "next", r#"{"type":"cron","hour":"25"}"#],
            "cron field 'hour': 25 is out of range 0-23",
        ),
        (&["trigger", "next", "61 * * * *"], "cron expression"),
        (
            &["trigger", "next", "* * * * *", "--tz", "Mars/Base"],
            "--tz: 'Mars/Base' is not an IANA time zone",
        ),
        (&["trigger", "next", "* * * * *", "--after", "yesterday"], "--after"),
        (&["trigger", "next", r#"{"type":"interval""#], "is not valid JSON"),
        (&["trigger", "next", "* * * * *", "-n", "0"], "-n must be between 1 and 10000"),
    ];
    for (args, want) in cases {
        let o = run(args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"), "{args:?}");
    }
}
