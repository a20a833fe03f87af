import Metrics
import Synchronization

/// Counters of the front end: every dropped packet by reason, every answered request by operation
/// and outcome. Kept here for logs and tests, and counted through swift-metrics for the endpoint.
public final class FrontEndStatistics: Sendable {
    public struct Snapshot: Sendable, Equatable {
        public var dropped: [String: Int] = [:]
        public var answered: [String: Int] = [:]

        public var totalDropped: Int { dropped.values.reduce(0, +) }
    }

    private let counters = Mutex(Snapshot())

    public init() {}

    /// Counts one dropped packet; returns how many were dropped for this reason so far.
    @discardableResult
    public func dropped(_ reason: String) -> Int {
        Counter(label: "fence_dropped_packets_total", dimensions: [("reason", reason)]).increment()
        return counters.withLock { counters in
            counters.dropped[reason, default: 0] += 1
            return counters.dropped[reason]!
        }
    }

    /// Counts one request by operation and outcome (`failed(timed-out)` is outcome `failed`,
    /// reason `timed-out`), with how long it took from its first packet.
    public func answered(operation: String, outcome: String, duration: Duration) {
        let (kind, reason) = outcome.firstIndex(of: "(").map { open in
            (String(outcome[..<open]), String(outcome[outcome.index(after: open)...].dropLast()))
        } ?? (outcome, "")
        Counter(label: "fence_requests_total", dimensions: [("op", operation), ("outcome", kind), ("reason", reason)]).increment()
        Timer(label: "fence_request_duration_seconds", dimensions: [("op", operation)]).record(duration: duration)
        counters.withLock { $0.answered["\(operation)/\(outcome)", default: 0] += 1 }
    }

    public var snapshot: Snapshot { counters.withLock { $0 } }
}
