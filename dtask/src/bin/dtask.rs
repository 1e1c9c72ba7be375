//! The `dtask` command-line tool: see `dtask --help`, and the README's "The dtask CLI".

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut stdout = std::io::stdout();
    if let Err(error) = dtask::cli::run(std::env::args_os(), &mut stdout).await {
        eprintln!("dtask: {error}");
        std::process::exit(error.exit_code());
    }
}
