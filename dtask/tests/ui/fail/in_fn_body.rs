fn main() {
    #[dtask::task]
    async fn send(_to: String) {}
}
