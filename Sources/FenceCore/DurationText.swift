extension Duration {
    /// Milliseconds with one decimal, for logs.
    public var millisecondsText: String {
        let (seconds, attoseconds) = components
        let tenths = seconds * 10_000 + attoseconds / 100_000_000_000_000
        return "\(tenths / 10).\(tenths % 10)"
    }
}
