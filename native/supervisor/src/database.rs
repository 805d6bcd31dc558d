//! Opening the state database of the runtime home (creating the home on first use).

use crate::error::{Result, SupervisorError};
use crate::paths;
use msb_state::Database;

pub fn open() -> Result<Database> {
    let home = paths::home_dir();
    std::fs::create_dir_all(&home)
        .map_err(SupervisorError::io(format!("creating {}", home.display())))?;
    Ok(Database::open(&paths::database_path())?)
}
