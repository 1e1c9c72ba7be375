struct Mailer;

impl Mailer {
    #[dtask::task]
    async fn send(&self, _to: String) {}
}

fn main() {}
