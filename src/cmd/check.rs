//! `madvd check FILE…`: validate policy files. Exit 0 when all are valid; 1 otherwise, with
//! `path:line:column: message` for the first mistake of each bad file.

use crate::cli::CheckArgs;
use crate::exit::{err, Code};
use anyhow::Result;
use schemes::{Policy, SysMetrics};

pub fn run(a: CheckArgs) -> Result<()> {
    let mut bad = 0;
    for f in &a.files {
        let checked = Policy::load(f).and_then(|p| {
            p.check_sources(&SysMetrics::host())?;
            p.check_runnable().map(|()| p)
        });
        match checked {
            Ok(p) => println!(
                "{}: ok ({} scheme{})",
                f.display(),
                p.schemes.len(),
                if p.schemes.len() == 1 { "" } else { "s" }
            ),
            Err(e) => {
                bad += 1;
                eprintln!("{}", crate::exit::fold(&e.to_string()));
            }
        }
    }
    if bad > 0 {
        return Err(err(
            Code::Failure,
            format!("{bad} of {} policy files invalid", a.files.len()),
        ));
    }
    Ok(())
}
