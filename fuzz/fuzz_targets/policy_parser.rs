//! Fuzz the policy parser: any bytes in, a policy or a positioned error out, never a panic.
//! The error of a parse failure must carry a position inside the text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The field locator runs only on text ron accepted; feed it anything too.
    let loc = schemes::locate::Locator::new(text);
    let _ = loc.find("schemes[0].pattern.size.max");
    match schemes::Policy::from_str(text, Path::new("fuzz.ron")) {
        Ok(p) => {
            let mut attrs = engine::Attrs::default();
            p.apply_monitor_overrides(&mut attrs);
        }
        Err(e) => {
            let lines = text.split('\n').count();
            assert!(
                e.line() >= 1 && e.line() <= lines,
                "line {} outside the text: {e}",
                e.line()
            );
            assert!(e.column() >= 1, "column 0: {e}");
            let _ = e.to_string();
        }
    }
});
