//! The nginx.conf lexer and parser: never panics, never loops, whatever the
//! text. Includes are not followed (no files), and the directive stage is
//! left out because it resolves host names (no DNS from a fuzzer).
#![no_main]

use ferry::config::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if text.contains("include") {
        return;
    }
    if let Ok((tree, files)) = parse::parse_text("fuzz.conf", text) {
        assert_eq!(files.len(), 1);
        // Every directive keeps a line inside the text.
        let lines = text.lines().count().max(1) as u32;
        fn check(directives: &[parse::Directive], lines: u32) {
            for directive in directives {
                assert!(directive.line >= 1 && directive.line <= lines + 1, "line {}", directive.line);
                if let Some(block) = &directive.block {
                    check(block, lines);
                }
            }
        }
        check(&tree, lines);
    }
});
