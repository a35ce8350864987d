//! The error shared by the line-oriented `/proc` and `/sys` readers.

use std::path::PathBuf;

use thiserror::Error;

/// A read or parse failure of one kernel file, naming the path (and the 1-based line).
#[derive(Debug, Error)]
pub enum ReadError {
    #[error("{path}:{line}: {msg}")]
    Parse {
        path: PathBuf,
        line: usize,
        msg: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The non-empty lines of `r`, numbered from 1 and decoded lossily (non-UTF-8 bytes only
/// label things); a read failure is an [`ReadError::Io`] naming `path`.
pub(crate) fn numbered_lines<'a>(
    r: impl std::io::BufRead + 'a,
    path: &'a std::path::Path,
) -> impl Iterator<Item = Result<(usize, String), ReadError>> + 'a {
    r.split(b'\n')
        .enumerate()
        .filter_map(move |(i, line)| match line {
            Err(source) => Some(Err(ReadError::Io {
                path: path.to_owned(),
                source,
            })),
            Ok(line) if line.is_empty() => None,
            Ok(line) => Some(Ok((i + 1, String::from_utf8_lossy(&line).into_owned()))),
        })
}
