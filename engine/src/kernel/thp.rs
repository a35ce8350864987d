//! `/sys/kernel/mm/transparent_hugepage/enabled`: the THP mode, the bracketed word of
//! `always madvise never` (mm/huge_memory.c `enabled_show`, Linux 6.12).

use crate::sysroot::SysRoot;

/// The system-wide THP mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThpMode {
    Always,
    Madvise,
    Never,
}

/// The mode the file's text selects (the bracketed word); anything else is `Never`. Pure.
pub fn parse_enabled(text: &str) -> ThpMode {
    if text.contains("[always]") {
        ThpMode::Always
    } else if text.contains("[madvise]") {
        ThpMode::Madvise
    } else {
        ThpMode::Never
    }
}

/// Read the THP mode. Missing file (no THP in the kernel): `Never`.
pub fn thp_mode(root: &SysRoot) -> ThpMode {
    std::fs::read_to_string(root.sys_file("kernel/mm/transparent_hugepage/enabled"))
        .map_or(ThpMode::Never, |s| parse_enabled(&s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bracketed_word_is_the_mode() {
        assert_eq!(parse_enabled("[always] madvise never\n"), ThpMode::Always);
        assert_eq!(parse_enabled("always [madvise] never\n"), ThpMode::Madvise);
        assert_eq!(parse_enabled("always madvise [never]\n"), ThpMode::Never);
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(thp_mode(&SysRoot::under(dir.path())), ThpMode::Never);
    }
}
