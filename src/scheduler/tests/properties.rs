//! Property tests: for any well-formed expression and zone the next run is
//! strictly later, and no input at all makes the parsers panic.

use proptest::prelude::*;

use super::*;
use crate::scheduler::cron::When;
use crate::scheduler::syntax;

fn field(max: u32) -> impl Strategy<Value = String> {
    prop_oneof![
        Just("*".to_owned()),
        (0..=max).prop_map(|n| n.to_string()),
        (0..=max, 0..=max).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
        (1..=max.max(1)).prop_map(|n| format!("*/{n}")),
        (0..=max, 0..=max).prop_map(|(a, b)| format!("{a},{b}")),
    ]
}

fn expr() -> impl Strategy<Value = String> {
    (field(59), field(23), field(31), field(12), field(7))
        .prop_map(|(m, h, dom, mon, dow)| format!("{m} {h} {dom} {mon} {dow}"))
}

fn zone() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(crate::tz::Zone::names()),
        ".{0,40}",
    ]
}

/// 1970 to 2200, to the millisecond.
fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    (0i64..7_258_118_400_000).prop_map(|ms| DateTime::from_timestamp_millis(ms).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Well-formed expressions in any zone: the next run is strictly
    /// later, and following it again keeps moving forward.
    #[test]
    fn next_run_is_always_in_the_future(e in expr(), z in zone(), now in instant()) {
        if let Ok(when) = When::parse(&e, &z, now) {
            let next = when.next_after(now);
            prop_assert!(next.is_some(), "parse checked that {e} runs after {now}");
            let next = next.unwrap();
            prop_assert!(next > now, "{e} in {z}: {next} is not after {now}");
            if let Some(after) = when.next_after(next) {
                prop_assert!(after > next);
            }
            prop_assert_eq!(next.timestamp() % 60, 0, "whole minutes only");
        }
    }

    /// Anything at all: no panic, and any run found is in the future.
    #[test]
    fn any_input_never_panics(e in "\\PC{0,60}", z in "\\PC{0,40}", now in instant()) {
        match When::parse(&e, &z, now) {
            Ok(when) => {
                let next = when.next_after(now);
                prop_assert!(next.is_some_and(|n| n > now));
            }
            Err(err) => prop_assert!(!err.to_string().is_empty()),
        }
        let _ = syntax::parse(&e);
    }

    /// Cron-shaped noise (digits and cron punctuation) exercises the
    /// parser's error paths harder than random text.
    #[test]
    fn cron_shaped_noise_never_panics(
        e in "[0-9*/,\\-LW#?+ ]{0,40}",
        z in zone(),
        now in instant(),
    ) {
        if let Ok(when) = When::parse(&e, &z, now) {
            prop_assert!(when.next_after(now).is_some_and(|n| n > now));
        }
    }
}
