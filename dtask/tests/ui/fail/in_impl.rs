struct Mailer;

impl Mailer {
    #[dtask::task]
    async fn send(_to: String) {}
}

fn main() {}
